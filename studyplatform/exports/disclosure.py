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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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
