"""Exact scoring of questionnaire answers against an instrument definition.

Pure functions (no Django): give an :class:`~surveys.instruments.Instrument` (or a shipped key)
and the answers, get a :class:`ScoreResult`. The steps, in order:

1. check every answer against its item (allowed option, slider/number range and step, type),
   collecting every problem into one :class:`AnswerError` whose message names each item;
2. mirror reverse-scored items within their own bounds (``low + high - value``);
3. compute each score (sum or mean, then multiplier) under its missing-item rule:
   ``all_required`` gives null when any item is missing, ``prorate`` rescales the answered items
   when at most ``max_missing`` are missing — each instrument file cites where its rule comes from;
4. look up the severity band (the band with the greatest lower bound not above the score, so a
   prorated 4.5 on PHQ-9 stays "minimal" rather than falling between 0-4 and 5-9);
5. raise flags from raw (un-reversed) item answers or computed scores, plus
   ``attention_check_failed:<item>`` for every attention check not answered as expected.

Command line (stable interface used by other tools)::

    python -m surveys.scoring phq9 '[0,1,2,3,0,1,2,3,1]'

prints ``{"instrument", "scores", "bands", "flags"}`` as JSON and exits 0; bad input exits 1 with a
message on stderr naming the item.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from surveys.instruments import (
    Instrument,
    InstrumentFormatError,
    Item,
    ScoreDef,
    UnknownInstrumentError,
    _answer_problem,
    _in_options,
    get_instrument,
)

Number = int | float


class AnswerError(ValueError):
    """One or more answers are invalid. ``errors`` maps item id (or ``"answers"``) to a reason."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class ScoreResult:
    instrument: str
    version: str
    scores: dict[str, Number | None]
    """Every score by name; None when the missing-item rule makes it invalid."""
    bands: dict[str, str | None]
    """Band label for each score that has bands; None when the score is None."""
    flags: list[str]
    missing_items: list[str]
    prorated: list[str]
    """Names of scores computed by prorating over missing items."""
    valid: bool
    """True when every score could be computed."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_answers(
    instrument: Instrument | str, answers: Mapping[str, Any] | Sequence[Any]
) -> ScoreResult:
    """Score one administration of ``instrument``.

    ``answers`` is either a mapping item id → answer (absent or None = missing) or a list with one
    entry per item, in item order, None for a missing item. Raises :class:`AnswerError`.
    """
    if isinstance(instrument, str):
        instrument = get_instrument(instrument)
    by_id = _answers_by_id(instrument, answers)

    # 1. validate, normalising integral floats (2.0 from a JSON client) to the option value.
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for item in instrument.items:
        value = by_id.get(item.id)
        if _is_missing(item, value):
            clean[item.id] = None
            continue
        problem = _answer_problem(item, value)
        if problem is not None:
            errors[item.id] = problem
        else:
            clean[item.id] = _normalise(item, value)
    if errors:
        raise AnswerError(errors)

    missing_items = [item.id for item in instrument.items if clean[item.id] is None]

    # 2. reverse scoring, on numeric items only.
    scored: dict[str, Number | None] = {}
    for item in instrument.items:
        value = clean[item.id]
        if value is None or not item.is_numeric:
            scored[item.id] = None
            continue
        if item.reverse_scored:
            low, high = item.value_bounds()
            value = low + high - value
        scored[item.id] = value

    # 3-4. scores and bands.
    scores: dict[str, Number | None] = {}
    bands: dict[str, str | None] = {}
    prorated: list[str] = []
    for score in instrument.scores:
        value, was_prorated = _compute(score, scored)
        scores[score.name] = value
        if was_prorated:
            prorated.append(score.name)
        if score.bands:
            bands[score.name] = _band_for(score, value)

    # 5. flags.
    flags: list[str] = []
    for flag in instrument.flags:
        subject = clean[flag.item] if flag.item is not None else scores[flag.score]
        if (
            subject is not None
            and _compare(subject, flag.op, flag.value)
            and (flag.name not in flags)
        ):
            flags.append(flag.name)
    for item in instrument.items:
        check = item.attention_check
        # A skipped attention check is a failed one: the participant did not show attention.
        if check is not None and not _matches(clean[item.id], check.expected):
            flags.append(f"attention_check_failed:{item.id}")

    return ScoreResult(
        instrument=instrument.key,
        version=instrument.version,
        scores=scores,
        bands=bands,
        flags=flags,
        missing_items=missing_items,
        prorated=prorated,
        valid=all(v is not None for v in scores.values()),
    )


def _answers_by_id(
    instrument: Instrument, answers: Mapping[str, Any] | Sequence[Any]
) -> dict[str, Any]:
    ids = instrument.item_ids
    if isinstance(answers, Mapping):
        unknown = [k for k in answers if k not in ids]
        if unknown:
            raise AnswerError({str(k): "unknown item" for k in unknown})
        return dict(answers)
    if isinstance(answers, str | bytes) or not isinstance(answers, Sequence):
        raise AnswerError({"answers": "expected a mapping of item id to answer or a list"})
    if len(answers) != len(ids):
        raise AnswerError(
            {"answers": f"expected {len(ids)} answers in item order, got {len(answers)}"}
        )
    return dict(zip(ids, answers, strict=True))


def _is_missing(item: Item, value: Any) -> bool:
    if value is None:
        return True
    # An all-blank text box is an unanswered question, not an answer.
    return item.type == "free_text" and isinstance(value, str) and not value.strip()


def _normalise(item: Item, value: Any) -> Any:
    if item.type in ("likert", "single_choice"):
        return next(o.value for o in item.options if _in_options(value, (o.value,)))
    if item.type == "multiple_choice":
        return [next(o.value for o in item.options if _in_options(v, (o.value,))) for v in value]
    if item.type in ("slider", "number") and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _compute(score: ScoreDef, values: Mapping[str, Number | None]) -> tuple[Number | None, bool]:
    item_values = [values[i] for i in score.items]
    answered = [v for v in item_values if v is not None]
    n_missing = len(item_values) - len(answered)
    prorate = 0 < n_missing <= score.missing.max_missing and score.missing.rule == "prorate"
    if n_missing and not prorate:
        return None, False
    if score.method == "mean":
        total: Number = sum(answered) / len(answered)
    elif prorate:
        # Prorated total = mean of the answered items x number of items in the score.
        total = sum(answered) * len(item_values) / len(answered)
    else:
        total = sum(answered)
    total = total * score.multiplier
    if score.missing.round is not None:
        total = _round_half_up(total, score.missing.round)
    return _tidy(total), prorate


def _round_half_up(x: Number, places: int) -> Number:
    # Python's round() is banker's rounding (round(2.5) == 2); scoring manuals mean 2.5 -> 3.
    quantum = Decimal(1).scaleb(-places)
    rounded = Decimal(str(x)).quantize(quantum, rounding=ROUND_HALF_UP)
    return int(rounded) if places == 0 else float(rounded)


def _tidy(x: Number) -> Number:
    # Keep integral results as int so JSON shows 12, not 12.0; trim float noise from steps
    # such as 0.1.
    if isinstance(x, float):
        x = round(x, 9)
        if x.is_integer():
            return int(x)
    return x


def _band_for(score: ScoreDef, value: Number | None) -> str | None:
    if value is None:
        return None
    label = None
    for band in score.bands:  # sorted ascending; validated at load time
        if value >= band.min:
            label = band.label
    return label


def _compare(subject: Any, op: str, target: Any) -> bool:
    if op == "eq":
        return _matches(subject, target)
    if op == "ne":
        return not _matches(subject, target)
    if isinstance(subject, bool | str | list) or isinstance(target, bool | str):
        return False
    return {
        "gt": subject > target,
        "ge": subject >= target,
        "lt": subject < target,
        "le": subject <= target,
    }[op]


def _matches(value: Any, expected: Any) -> bool:
    return value is not None and _in_options(value, (expected,))


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m surveys.scoring KEY 'JSON_LIST'``; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(
            "usage: python -m surveys.scoring INSTRUMENT_KEY 'ANSWERS_JSON_LIST'", file=sys.stderr
        )
        return 1
    key, raw = args
    try:
        instrument = get_instrument(key)
    except UnknownInstrumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except InstrumentFormatError as exc:  # a broken shipped file should say so, not crash
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        answers = json.loads(raw)
    except json.JSONDecodeError as exc:
        print(f"error: ANSWERS is not valid JSON: {exc}", file=sys.stderr)
        return 1
    if not isinstance(answers, list):
        print(
            "error: ANSWERS must be a JSON list with one answer per item, in item order "
            "(null for a missing item)",
            file=sys.stderr,
        )
        return 1
    try:
        result = score_answers(instrument, answers)
    except AnswerError as exc:
        print(f"error: {key}: {exc}", file=sys.stderr)
        return 1
    out = {
        "instrument": result.instrument,
        "scores": result.scores,
        "bands": result.bands,
        "flags": result.flags,
    }
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
