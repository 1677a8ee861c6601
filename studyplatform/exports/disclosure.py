"""Statistical disclosure control for the exported demographics: generalization and k-anonymity.

Pure Python (no Django). Ages become 10-year bands (90 and over grouped, as HIPAA Safe Harbor
asks). Then every combination of the declared quasi-identifiers (by default age band, gender and
arm) must be shared by at least k rows; where it is not, values are replaced by "*" (cell
suppression) until it is. The report says how many cells of each column were suppressed, so the
export README can tell analysts what is missing and why.

The algorithm is greedy, not optimal: while some rows sit in classes smaller than k, suppress,
in all of those rows, the quasi-identifier with the most distinct values among them (ties go to
the one declared first). Rows left fully suppressed but still fewer than k absorb the smallest
remaining classes until they reach k; if the whole table has fewer than k rows, everything is
suppressed and the report says k was not reachable.

The suppression then applies to the export as a whole, not only to the participants table: see
DisclosurePlan and disclosure_verify below.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

SUPPRESSED = "*"
OLDEST_BAND = "90+"


def age_band(age: Any) -> str | None:
    """ "30-39" for 30..39; "90+" from 90 on; None for a missing or non-numeric answer."""
    if isinstance(age, bool) or not isinstance(age, int | float):
        return None
    years = int(age)
    if years < 0:
        return None
    if years >= 90:
        return OLDEST_BAND
    low = years // 10 * 10
    return f"{low}-{low + 9}"


def age_bands() -> list[str]:
    """Every band age_band can produce, youngest first (for the codebook)."""
    return [f"{low}-{low + 9}" for low in range(0, 90, 10)] + [OLDEST_BAND]


@dataclass
class KAnonymityReport:
    k: int
    quasi_identifiers: list[str]
    rows: int
    suppressed_cells: dict[str, int] = field(default_factory=dict)
    rows_fully_suppressed: int = 0
    equivalence_classes: int = 0
    smallest_class: int = 0
    satisfied: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(row: dict[str, Any], qis: Sequence[str]) -> tuple:
    return tuple(row.get(q) for q in qis)


def k_anonymize(
    rows: Sequence[dict[str, Any]], quasi_identifiers: Sequence[str], k: int
) -> tuple[list[dict[str, Any]], KAnonymityReport]:
    """Copies of `rows` in which every quasi-identifier combination occurs at least k times."""
    if k < 1:
        raise ValueError("k must be at least 1")
    qis = list(quasi_identifiers)
    out = [dict(row) for row in rows]
    report = KAnonymityReport(k=k, quasi_identifiers=qis, rows=len(out))
    suppressed: Counter[str] = Counter()
    if not out or not qis:
        report.equivalence_classes = 1 if out else 0
        report.smallest_class = len(out)
        return out, report

    def suppress(row: dict[str, Any], qi: str) -> None:
        if row.get(qi) != SUPPRESSED:
            row[qi] = SUPPRESSED
            suppressed[qi] += 1

    while True:
        sizes = Counter(_key(row, qis) for row in out)
        violating = [row for row in out if sizes[_key(row, qis)] < k]
        if not violating:
            break
        candidates = []
        for index, qi in enumerate(qis):
            distinct = {row.get(qi) for row in violating if row.get(qi) != SUPPRESSED}
            if distinct:
                candidates.append((len(distinct), -index, qi))
        if not candidates:
            break  # every violating row is already fully suppressed
        _, _, chosen = max(candidates)
        for row in violating:
            suppress(row, chosen)

    star = tuple(SUPPRESSED for _ in qis)
    sizes = Counter(_key(row, qis) for row in out)
    if 0 < sizes[star] < k:
        # The fully suppressed rows still form too small a class: fold in the smallest other
        # classes whole (a class that merges keeps no value that could single a row out).
        others = sorted((size, repr(cls), cls) for cls, size in sizes.items() if cls != star)
        for size, _, cls in others:
            for row in out:
                if _key(row, qis) == cls:
                    for qi in qis:
                        suppress(row, qi)
            sizes[star] += size
            if sizes[star] >= k:
                break

    sizes = Counter(_key(row, qis) for row in out)
    report.suppressed_cells = {qi: suppressed.get(qi, 0) for qi in qis}
    report.rows_fully_suppressed = sum(1 for row in out if _key(row, qis) == star)
    report.equivalence_classes = len(sizes)
    report.smallest_class = min(sizes.values())
    report.satisfied = report.smallest_class >= k
    return out, report


# ---------------------------------------------------------------------------------------------
# Disclosure control over the whole export
#
# k-anonymity is decided on the participants table, but the other files of the same zip join on
# the same pseudonym: an arm shown as "*" in participants.csv is worthless if messages.csv gives
# the arm, the model names or the token counts of the arm's system prompt for that pseudonym.
# So the decision is made once, per pseudonym (DisclosurePlan), every writer applies it to every
# column that carries a suppressed quasi-identifier (the codebook declares, per column, which
# quasi-identifiers it carries), and after the build every file is read back and checked
# (disclosure_verify): a cell that still carries a suppressed value fails the build.


class DisclosureLeak(Exception):
    """A written file still carries a quasi-identifier that k-anonymity suppressed."""


def suppressed_value(column_type: str) -> Any:
    """What a suppressed cell holds: "*" in a text column, empty (null) in any other."""
    return SUPPRESSED if column_type == "string" else None


@dataclass(frozen=True)
class DisclosurePlan:
    """The quasi-identifiers suppressed for each pseudonym, decided once for the whole export."""

    suppressed: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_published(
        cls, rows: Sequence[dict[str, Any]], quasi_identifiers: Sequence[str]
    ) -> DisclosurePlan:
        plan: dict[str, frozenset[str]] = {}
        for row in rows:
            qis = frozenset(q for q in quasi_identifiers if row.get(q) == SUPPRESSED)
            if qis:
                plan[row["participant_id"]] = qis
        return cls(plan)

    def qis_of(self, pid: Any) -> frozenset[str]:
        return self.suppressed.get(pid, frozenset())

    def counts(self) -> dict[str, int]:
        """How many pseudonyms have each quasi-identifier suppressed."""
        counter: Counter[str] = Counter()
        for qis in self.suppressed.values():
            counter.update(qis)
        return dict(sorted(counter.items()))

    def apply(self, row: dict[str, Any], columns: Sequence[Any]) -> dict[str, Any]:
        """`row` with every column that carries one of its pseudonym's suppressed
        quasi-identifiers replaced by the suppressed value (a copy; the input is not changed)."""
        qis = self.qis_of(row.get("participant_id"))
        if not qis:
            return row
        out = dict(row)
        for column in columns:
            if qis.intersection(column.carries):
                out[column.name] = suppressed_value(column.type)
        return out


def _blank(value: Any) -> bool:
    return value is None or value == ""


def disclosure_verify(
    tables: Iterable[tuple[str, Sequence[Any], Iterable[dict[str, Any]]]],
    plan: DisclosurePlan,
    forbidden: Mapping[str, set[str]],
) -> int:
    """Read-back check of the written files; raises DisclosureLeak at the first leak.

    `tables` gives, for every data file in the export, its name, its declared columns and its
    rows as read back from the file. For each row of a pseudonym with suppressed
    quasi-identifiers: every column carrying one of them must hold the suppressed value, and no
    other (non free-text) cell may equal one of the `forbidden` values of a suppressed
    quasi-identifier (for the arm: every arm key and model name), which catches a column that
    carries the arm without declaring it. Returns the number of rows checked.
    """
    checked = 0
    for name, columns, rows in tables:
        declared = {c.name: c for c in columns}
        for row in rows:
            unknown = set(row) - set(declared)
            if unknown:
                raise DisclosureLeak(f"{name}: undocumented column(s) {', '.join(sorted(unknown))}")
            qis = plan.qis_of(row.get("participant_id"))
            if not qis:
                continue
            checked += 1
            values = {v for q in qis for v in forbidden.get(q, ())}
            for column in columns:
                value = row.get(column.name)
                if qis.intersection(column.carries):
                    expected = suppressed_value(column.type)
                    ok = value == SUPPRESSED if expected == SUPPRESSED else _blank(value)
                    if not ok:
                        carried = ", ".join(sorted(qis.intersection(column.carries)))
                        raise DisclosureLeak(
                            f"{name}: column {column.name} carries {carried}, suppressed for "
                            "k-anonymity, but is not suppressed for that participant"
                        )
                elif not column.free_text and isinstance(value, str) and value in values:
                    raise DisclosureLeak(
                        f"{name}: column {column.name} holds the value of a quasi-identifier "
                        "suppressed for k-anonymity"
                    )
    return checked
