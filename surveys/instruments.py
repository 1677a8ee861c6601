"""Questionnaire instrument definitions: loading, format validation and the shipped library.

An instrument is a plain dict (read from a YAML file in ``surveys/instruments/`` or written by a
researcher inside a study protocol) in the format documented in ``docs/instruments.md``. This
module checks that dict in two passes, turning every problem into a message that names its path
(``items[2].options: at least two options required``):

1. the shipped JSON Schema (``surveys/instruments/schema.json``) checks shapes and types;
2. ``_check_semantics`` checks what a schema cannot express: references between items, subscales,
   scores and flags; that a declared score range matches what the items can produce; that
   severity bands cover every reachable score exactly once.

The result is an immutable :class:`Instrument`. Scoring lives in ``surveys.scoring``.
This module is pure Python (no Django) so notebooks and the CLI can use it directly.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from studyplatform.core.schema_errors import schema_error_messages

INSTRUMENTS_DIR = Path(__file__).resolve().parent / "instruments"
SCHEMA_PATH = INSTRUMENTS_DIR / "schema.json"
LANGUAGES = ("en", "pt-BR")

# Item types whose answers are numbers that can enter a score. multiple_choice answers are lists
# and free_text answers are prose, so neither can be summed.
NUMERIC_TYPES = frozenset({"likert", "single_choice", "slider", "number"})
CHOICE_TYPES = frozenset({"likert", "single_choice", "multiple_choice"})

# Above this many distinct reachable score values we skip the exhaustive band-coverage check
# (e.g. several 0-100 number items); the endpoint checks still run.
_MAX_REACHABLE = 20_000

Value = int | float | str


class InstrumentFormatError(ValueError):
    """An instrument definition does not follow the format. ``errors`` lists every problem."""

    def __init__(self, errors: Sequence[str], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.errors))


class UnknownInstrumentError(KeyError):
    """No shipped instrument has the requested key."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else "unknown instrument"


@dataclass(frozen=True)
class Option:
    value: Value
    label: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttentionCheck:
    expected: Value


@dataclass(frozen=True)
class Item:
    id: str
    type: str
    text: Mapping[str, str] | None
    options: tuple[Option, ...] = ()
    required: bool = True
    reverse_scored: bool = False
    attention_check: AttentionCheck | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    integer: bool = False
    max_length: int | None = None

    @property
    def is_numeric(self) -> bool:
        """True when answers are numbers that may enter a score."""
        if self.type in ("likert", "slider"):
            return True
        if self.type == "single_choice":
            return all(_is_number(o.value) for o in self.options)
        if self.type == "number":
            return self.min is not None and self.max is not None
        return False

    def value_bounds(self) -> tuple[float, float]:
        """Lowest and highest raw answer; reverse scoring mirrors within these bounds."""
        if self.options:
            values = [o.value for o in self.options]
            return min(values), max(values)  # type: ignore[type-var]
        assert self.min is not None and self.max is not None
        return self.min, self.max

    def option_values(self) -> tuple[Value, ...]:
        return tuple(o.value for o in self.options)


@dataclass(frozen=True)
class Subscale:
    name: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Band:
    label: str
    min: float
    max: float
    title: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MissingRule:
    rule: str  # "all_required" or "prorate"
    max_missing: int = 0
    round: int | None = None
    source: str | None = None


@dataclass(frozen=True)
class ScoreDef:
    name: str
    method: str  # "sum" or "mean"
    items: tuple[str, ...]
    multiplier: float
    min: float
    max: float
    missing: MissingRule
    bands: tuple[Band, ...] = ()
    subscale: str | None = None


@dataclass(frozen=True)
class FlagDef:
    name: str
    op: str
    value: Value
    item: str | None = None
    score: str | None = None


@dataclass(frozen=True)
class Instrument:
    key: str
    version: str
    title: Mapping[str, str]
    languages: tuple[str, ...]
    items: tuple[Item, ...]
    subscales: tuple[Subscale, ...]
    scores: tuple[ScoreDef, ...]
    flags: tuple[FlagDef, ...]
    definition: Mapping[str, Any]
    """The validated source dict (option-set references resolved), for storage and display."""

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(item_id)

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(it.id for it in self.items)

    @property
    def licence(self) -> Mapping[str, Any]:
        return self.definition.get("licence", {})

    @property
    def source(self) -> Mapping[str, Any]:
        return self.definition.get("source", {})


# --------------------------------------------------------------------------------------------
# Loading


@functools.cache
def _schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def load_instrument_dict(
    data: Mapping[str, Any], *, require_provenance: bool = False, source: str | None = None
) -> Instrument:
    """Validate an instrument dict and build an :class:`Instrument`.

    ``require_provenance`` is set for shipped files: they must carry licence, source citation and
    a source for each missing-data rule. A researcher's custom instrument may omit these.
    Raises :class:`InstrumentFormatError` listing every problem found.
    """
    errors = validate_instrument_dict(data, require_provenance=require_provenance)
    if errors:
        raise InstrumentFormatError(errors, source=source)
    return _build(data)


def validate_instrument_dict(data: Any, *, require_provenance: bool = False) -> list[str]:
    """Return the list of format errors (empty when valid), each prefixed by its path."""
    if not isinstance(data, Mapping):
        return [f"(root): expected a mapping, got {type(data).__name__}"]
    schema_errors = sorted(
        message
        for e in _schema_validator().iter_errors(data)
        for message in _format_schema_error(e)
    )
    if schema_errors:
        # Semantic checks assume the shapes are right, so stop at shape errors.
        return list(dict.fromkeys(schema_errors))
    errors = _check_semantics(data)
    if require_provenance:
        errors.extend(_check_provenance(data))
    return errors


def load_instrument_file(path: str | Path) -> Instrument:
    """Load and validate one shipped instrument YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InstrumentFormatError([f"(root): invalid YAML: {exc}"], source=path.name) from exc
    instrument = load_instrument_dict(data, require_provenance=True, source=path.name)
    if path.stem != instrument.key:
        raise InstrumentFormatError(
            [f"key: '{instrument.key}' does not match file name '{path.stem}'"], source=path.name
        )
    return instrument


@functools.cache
def _registry() -> dict[str, Instrument]:
    instruments = {}
    for path in sorted(INSTRUMENTS_DIR.glob("*.yaml")):
        instrument = load_instrument_file(path)
        instruments[instrument.key] = instrument
    return instruments


def get_instrument(key: str) -> Instrument:
    """Return a shipped instrument by key (e.g. ``"phq9"``)."""
    try:
        return _registry()[key]
    except KeyError:
        known = ", ".join(sorted(_registry()))
        raise UnknownInstrumentError(f"unknown instrument '{key}' (known: {known})") from None


def list_instruments() -> list[Instrument]:
    """All shipped instruments, sorted by key."""
    return [_registry()[k] for k in sorted(_registry())]


def instrument_index() -> dict[str, tuple[set[str], set[str]]]:
    """{key: (item ids, score names)} of every shipped instrument: what the protocol validator
    checks a protocol's instrument references against (a fresh dict on each call, since the
    validator adds the protocol's custom instruments to it)."""
    return {i.key: (set(i.item_ids), {s.name for s in i.scores}) for i in list_instruments()}


# --------------------------------------------------------------------------------------------
# Schema error formatting


def _format_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _format_schema_error(error: jsonschema.ValidationError) -> list[str]:
    # For oneOf failures, the most specific sub-error explains the problem best
    # (e.g. an option list with one entry is "too short", not "not valid under any schema").
    if error.validator == "oneOf" and error.context:
        # Branches that fail only on type are the ones the author did not mean.
        meant = [e for e in error.context if e.validator != "type"]
        best = jsonschema.exceptions.best_match(meant) if meant else None
        if best is not None:
            full = list(error.absolute_path) + list(best.relative_path)
            return _message_for(best, full)
    return _message_for(error, list(error.absolute_path))


# What the instrument schema's patterns mean, for the researcher.
_PATTERN_HINTS = {
    "^[a-z][a-z0-9_]*$": "must start with a lowercase letter and contain only lowercase "
    "letters, digits and underscores",
    "^[a-z][a-z0-9_]*(:[a-z][a-z0-9_]*)?$": "must be a name in lowercase letters, digits and "
    "underscores, optionally prefixed by another such name and a colon",
}


def _message_for(error: jsonschema.ValidationError, path: list[Any]) -> list[str]:
    # An option list is a choice between at least two answers: say so rather than "2 items".
    if error.validator == "minItems" and (
        (path and path[-1] == "options") or (len(path) >= 2 and path[0] == "option_sets")
    ):
        return [f"{_format_path(path)}: at least two options required"]
    # The wording is the platform's (core/schema_errors.py), shared with protocol errors.
    return [
        f"{_format_path(parts)}: {message}"
        for parts, message in schema_error_messages(error, path, pattern_hints=_PATTERN_HINTS)
    ]


# --------------------------------------------------------------------------------------------
# Semantic checks


def _is_number(value: Any) -> bool:
    # bool is an int subclass but True is not a valid score value.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _resolved_options(data: Mapping[str, Any], item: Mapping[str, Any]) -> list[dict] | None:
    options = item.get("options")
    if isinstance(options, str):
        return data.get("option_sets", {}).get(options)
    return options


def _check_semantics(data: Mapping[str, Any]) -> list[str]:
    errors: list[str] = []
    languages = set(data["languages"])

    def check_langs(text: Mapping[str, str] | None, where: str) -> None:
        for lang in text or {}:
            if lang not in languages:
                errors.append(f"{where}: language '{lang}' is not in languages")

    check_langs(data.get("title"), "title")
    check_langs(data.get("instructions"), "instructions")

    # ---- items
    items_by_id: dict[str, Mapping[str, Any]] = {}
    for i, item in enumerate(data["items"]):
        where = f"items[{i}]"
        if item["id"] in items_by_id:
            errors.append(f"{where}.id: duplicate item id '{item['id']}'")
        items_by_id.setdefault(item["id"], item)
        check_langs(item.get("text"), f"{where}.text")
        errors.extend(_check_item(data, item, where))

    numeric_ids = set()
    attention_ids = set()
    broken_ids = set()  # items already reported; do not report them again from scores
    for item_id, item in items_by_id.items():
        built = _build_item(data, item) if not _item_has_errors(data, item) else None
        if built is None:
            broken_ids.add(item_id)
        elif built.is_numeric:
            numeric_ids.add(item_id)
        if "attention_check" in item:
            attention_ids.add(item_id)

    def check_scored_items(ids: Sequence[str], where: str) -> None:
        seen = set()
        for j, item_id in enumerate(ids):
            if item_id in seen:
                errors.append(f"{where}[{j}]: item '{item_id}' listed twice")
            seen.add(item_id)
            if item_id in broken_ids:
                continue
            if item_id not in items_by_id:
                errors.append(f"{where}[{j}]: unknown item '{item_id}'")
            elif item_id in attention_ids:
                errors.append(f"{where}[{j}]: attention-check item '{item_id}' cannot be scored")
            elif item_id not in numeric_ids:
                errors.append(
                    f"{where}[{j}]: item '{item_id}' ({items_by_id[item_id]['type']}) "
                    "has no numeric answers to score"
                )

    # ---- subscales
    subscales: dict[str, list[str]] = {}
    for i, sub in enumerate(data.get("subscales", [])):
        where = f"subscales[{i}]"
        if sub["name"] in subscales:
            errors.append(f"{where}.name: duplicate subscale name '{sub['name']}'")
        subscales[sub["name"]] = sub["items"]
        check_scored_items(sub["items"], f"{where}.items")

    # ---- scores
    score_names: set[str] = set()
    for i, score in enumerate(data["scores"]):
        where = f"scores[{i}]"
        if score["name"] in score_names:
            errors.append(f"{where}.name: duplicate score name '{score['name']}'")
        score_names.add(score["name"])
        has_items, has_sub = "items" in score, "subscale" in score
        if has_items == has_sub:
            errors.append(f"{where}: give exactly one of 'items' or 'subscale'")
            continue
        if has_sub:
            if score["subscale"] not in subscales:
                errors.append(f"{where}.subscale: unknown subscale '{score['subscale']}'")
                continue
            ids = subscales[score["subscale"]]
        elif score["items"] == "all":
            ids = [k for k in items_by_id if k in numeric_ids and k not in attention_ids]
            if not ids:
                errors.append(f"{where}.items: 'all' selects no scorable items")
                continue
        else:
            ids = score["items"]
            before = len(errors)
            check_scored_items(ids, f"{where}.items")
            if len(errors) > before:
                continue
        if any(k not in numeric_ids or k in attention_ids for k in ids):
            continue  # already reported at the item or subscale
        errors.extend(
            _check_score(data, score, [_build_item(data, items_by_id[k]) for k in ids], where)
        )

    # ---- flags
    for i, flag in enumerate(data.get("flags", [])):
        where = f"flags[{i}]"
        has_item, has_score = "item" in flag, "score" in flag
        if has_item == has_score:
            errors.append(f"{where}: give exactly one of 'item' or 'score'")
        elif has_item and flag["item"] not in items_by_id:
            errors.append(f"{where}.item: unknown item '{flag['item']}'")
        elif has_score and flag["score"] not in score_names:
            errors.append(f"{where}.score: unknown score '{flag['score']}'")
        if flag["op"] in ("gt", "ge", "lt", "le") and not _is_number(flag["value"]):
            errors.append(f"{where}.value: '{flag['op']}' needs a number")
    return errors


def _item_has_errors(data: Mapping[str, Any], item: Mapping[str, Any]) -> bool:
    return bool(_check_item(data, item, "x"))


def _check_item(data: Mapping[str, Any], item: Mapping[str, Any], where: str) -> list[str]:
    errors: list[str] = []
    kind = item["type"]
    options_ref = item.get("options")
    if kind in CHOICE_TYPES:
        if isinstance(options_ref, str) and options_ref not in data.get("option_sets", {}):
            return [f"{where}.options: unknown option set '{options_ref}'"]
        options = _resolved_options(data, item) or []
        seen: set[Any] = set()
        for j, option in enumerate(options):
            value = option["value"]
            key = (type(value) is str, value)
            if key in seen:
                errors.append(f"{where}.options[{j}].value: duplicate value {value!r}")
            seen.add(key)
            if kind == "likert" and not _is_number(value):
                errors.append(f"{where}.options[{j}].value: likert values must be numbers")
            for lang in option.get("label", {}):
                if lang not in data["languages"]:
                    errors.append(
                        f"{where}.options[{j}].label: language '{lang}' is not in languages"
                    )
    elif "options" in item:
        errors.append(f"{where}.options: not allowed for {kind} items")

    if kind in ("slider", "number"):
        lo, hi, step = item.get("min"), item.get("max"), item.get("step")
        if lo is not None and hi is not None and lo >= hi:
            errors.append(f"{where}.max: must be greater than min")
        elif step is not None and lo is not None and hi is not None:
            steps = (hi - lo) / step
            if not math.isclose(steps, round(steps), abs_tol=1e-9):
                errors.append(f"{where}.step: (max - min) must be a whole number of steps")
    else:
        for name in ("min", "max", "step", "integer", "anchors"):
            if name in item:
                errors.append(f"{where}.{name}: only for slider and number items")
    if "max_length" in item and kind != "free_text":
        errors.append(f"{where}.max_length: only for free_text items")

    if item.get("reverse_scored") and kind in ("multiple_choice", "free_text"):
        errors.append(f"{where}.reverse_scored: {kind} items cannot be reverse scored")
    if (
        item.get("reverse_scored")
        and kind == "number"
        and (item.get("min") is None or item.get("max") is None)
    ):
        errors.append(f"{where}.reverse_scored: needs min and max")

    check = item.get("attention_check")
    if check is not None and not errors:
        if kind in ("multiple_choice", "free_text"):
            errors.append(f"{where}.attention_check: not supported for {kind} items")
        else:
            built = _build_item(data, item)
            if _answer_problem(built, check["expected"]) is not None:
                errors.append(
                    f"{where}.attention_check.expected: {check['expected']!r} is not a valid answer"
                )
    return errors


def _check_score(
    data: Mapping[str, Any], score: Mapping[str, Any], items: list[Item], where: str
) -> list[str]:
    errors: list[str] = []
    multiplier = score.get("multiplier", 1)
    n = len(items)
    lo = sum(it.value_bounds()[0] for it in items) * multiplier
    hi = sum(it.value_bounds()[1] for it in items) * multiplier
    if score["method"] == "mean":
        lo, hi = lo / n, hi / n
    declared = score["range"]
    if not (math.isclose(declared["min"], lo) and math.isclose(declared["max"], hi)):
        errors.append(
            f"{where}.range: declared {_fmt(declared['min'])}-{_fmt(declared['max'])} "
            f"but the items give {_fmt(lo)}-{_fmt(hi)}"
        )

    missing = score["missing"]
    if missing["rule"] == "prorate":
        if "max_missing" not in missing:
            errors.append(f"{where}.missing: prorate needs max_missing")
        elif missing["max_missing"] >= n:
            errors.append(f"{where}.missing.max_missing: must be less than the {n} items scored")
    elif "max_missing" in missing:
        errors.append(f"{where}.missing.max_missing: only for the prorate rule")

    bands = score.get("bands", [])
    for j, band in enumerate(bands):
        if band["min"] > band["max"]:
            errors.append(f"{where}.bands[{j}]: min is greater than max")
        if j and band["min"] <= bands[j - 1]["max"]:
            errors.append(f"{where}.bands[{j}]: overlaps or is out of order with bands[{j - 1}]")
        for lang in band.get("title", {}):
            if lang not in data["languages"]:
                errors.append(f"{where}.bands[{j}].title: language '{lang}' is not in languages")
    labels = [b["label"] for b in bands]
    if len(set(labels)) != len(labels):
        errors.append(f"{where}.bands: labels must be unique")
    if bands and not errors:
        before = len(errors)
        if not math.isclose(bands[0]["min"], declared["min"]):
            errors.append(f"{where}.bands[0].min: must equal range min {_fmt(declared['min'])}")
        if not math.isclose(bands[-1]["max"], declared["max"]):
            errors.append(
                f"{where}.bands[{len(bands) - 1}].max: must equal range max {_fmt(declared['max'])}"
            )
        reachable = _reachable_scores(items, score["method"], multiplier)
        if len(errors) > before:
            reachable = None  # the end points are wrong; one message is enough
        for value in sorted(reachable or ()):
            if not any(b["min"] - 1e-9 <= value <= b["max"] + 1e-9 for b in bands):
                errors.append(f"{where}.bands: reachable score {_fmt(value)} is in no band")
                break
    return errors


def _reachable_scores(items: list[Item], method: str, multiplier: float) -> set[float] | None:
    """Every total a complete set of answers can produce, or None when too many to list."""
    sums: set[float] = {0}
    for item in items:
        values = _possible_values(item)
        if values is None:
            return None
        sums = {s + v for s in sums for v in values}
        if len(sums) > _MAX_REACHABLE:
            return None
    n = len(items)
    return {round((s / n if method == "mean" else s) * multiplier, 9) for s in sums}


def _possible_values(item: Item) -> list[float] | None:
    if item.options:
        return [float(o.value) for o in item.options]  # type: ignore[arg-type]
    lo, hi = item.value_bounds()
    step = item.step or (1 if item.integer or item.type == "slider" else None)
    if step is None:
        return None
    count = round((hi - lo) / step) + 1
    if count > _MAX_REACHABLE:
        return None
    return [lo + k * step for k in range(count)]


def _check_provenance(data: Mapping[str, Any]) -> list[str]:
    errors = []
    for name in ("licence", "source"):
        if name not in data:
            errors.append(f"{name}: required for shipped instruments")
    licence = data.get("licence")
    if licence is not None:
        shipped = set(licence["wording_shipped"])
        if set(data["languages"]) - shipped and "obtain_from" not in licence:
            errors.append(
                "licence.obtain_from: required when wording is not shipped in every language"
            )
        for i, item in enumerate(data["items"]):
            text_langs = set(item.get("text", {}))
            if text_langs != shipped:
                errors.append(
                    f"items[{i}].text: languages {sorted(text_langs)} differ from "
                    f"licence.wording_shipped {sorted(shipped)}"
                )
    for i, score in enumerate(data["scores"]):
        if "source" not in score["missing"]:
            errors.append(f"scores[{i}].missing.source: required for shipped instruments")
        if score.get("bands") and "bands_source" not in score:
            errors.append(f"scores[{i}].bands_source: required for shipped instruments")
    return errors


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# --------------------------------------------------------------------------------------------
# Answer checking shared with surveys.scoring


def _answer_problem(item: Item, value: Any) -> str | None:
    """Why ``value`` is not a valid answer to ``item``, or None when it is."""
    if item.type in CHOICE_TYPES:
        allowed = item.option_values()
        if item.type == "multiple_choice":
            if not isinstance(value, list):
                return f"expected a list of choices, got {_describe(value)}"
            for v in value:
                if not _in_options(v, allowed):
                    return f"{v!r} is not one of the allowed values {list(allowed)}"
            if len(set(map(repr, value))) != len(value):
                return "a choice is selected twice"
            return None
        if not _in_options(value, allowed):
            same_kind = any(isinstance(value, str) == isinstance(a, str) for a in allowed)
            if isinstance(value, bool) or not isinstance(value, int | float | str) or not same_kind:
                return f"expected one of {list(allowed)}, got {_describe(value)}"
            return f"{value!r} is not one of the allowed values {list(allowed)}"
        return None
    if item.type in ("slider", "number"):
        if not _is_number(value):
            return f"expected a number, got {_describe(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        if item.min is not None and value < item.min:
            return f"{value!r} is below the minimum {_fmt(item.min)}"
        if item.max is not None and value > item.max:
            return f"{value!r} is above the maximum {_fmt(item.max)}"
        if item.integer and not float(value).is_integer():
            return f"{value!r} is not a whole number"
        base = item.min if item.min is not None else 0
        if item.step is not None:
            steps = (value - base) / item.step
            if not math.isclose(steps, round(steps), abs_tol=1e-9):
                return f"{value!r} is not on a step of {_fmt(item.step)} from {_fmt(base)}"
        return None
    # free_text
    if not isinstance(value, str):
        return f"expected text, got {_describe(value)}"
    if item.max_length is not None and len(value) > item.max_length:
        return f"text is longer than {item.max_length} characters"
    return None


def _in_options(value: Any, allowed: Sequence[Value]) -> bool:
    # Type-strict membership: "1" must not match 1, True must not match 1, but 2.0 matches 2
    # because JSON clients send integral floats.
    if isinstance(value, bool):
        return False
    for option in allowed:
        if isinstance(option, str) or isinstance(value, str):
            if isinstance(option, str) and isinstance(value, str) and option == value:
                return True
        elif _is_number(value) and value == option:
            return True
    return False


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


# --------------------------------------------------------------------------------------------
# Building dataclasses from a validated dict


def _build_item(data: Mapping[str, Any], item: Mapping[str, Any]) -> Item:
    options = tuple(
        Option(value=o["value"], label=dict(o.get("label", {})))
        for o in (_resolved_options(data, item) or [])
    )
    check = item.get("attention_check")
    return Item(
        id=item["id"],
        type=item["type"],
        text=dict(item["text"]) if "text" in item else None,
        options=options,
        required=item.get("required", True),
        reverse_scored=item.get("reverse_scored", False),
        attention_check=AttentionCheck(check["expected"]) if check else None,
        min=item.get("min"),
        max=item.get("max"),
        step=item.get("step"),
        integer=item.get("integer", False),
        max_length=item.get("max_length"),
    )


def _build(data: Mapping[str, Any]) -> Instrument:
    items = tuple(_build_item(data, it) for it in data["items"])
    subscales = tuple(Subscale(s["name"], tuple(s["items"])) for s in data.get("subscales", []))
    sub_items = {s.name: s.items for s in subscales}
    scorable = tuple(it.id for it in items if it.is_numeric and it.attention_check is None)
    scores = []
    for s in data["scores"]:
        if "subscale" in s:
            ids = sub_items[s["subscale"]]
        elif s["items"] == "all":
            ids = scorable
        else:
            ids = tuple(s["items"])
        m = s["missing"]
        scores.append(
            ScoreDef(
                name=s["name"],
                method=s["method"],
                items=tuple(ids),
                multiplier=s.get("multiplier", 1),
                min=s["range"]["min"],
                max=s["range"]["max"],
                missing=MissingRule(
                    rule=m["rule"],
                    max_missing=m.get("max_missing", 0),
                    round=m.get("round"),
                    source=m.get("source"),
                ),
                bands=tuple(
                    Band(b["label"], b["min"], b["max"], dict(b.get("title", {})))
                    for b in s.get("bands", [])
                ),
                subscale=s.get("subscale"),
            )
        )
    flags = tuple(
        FlagDef(
            name=f["name"], op=f["op"], value=f["value"], item=f.get("item"), score=f.get("score")
        )
        for f in data.get("flags", [])
    )
    # Keep a JSON-friendly copy with option-set references resolved, so the stored definition
    # is self-contained.
    definition = json.loads(json.dumps(data))
    for raw in definition["items"]:
        if isinstance(raw.get("options"), str):
            raw["options"] = definition["option_sets"][raw["options"]]
    return Instrument(
        key=data["key"],
        version=data["version"],
        title=dict(data["title"]),
        languages=tuple(data["languages"]),
        items=items,
        subscales=subscales,
        scores=tuple(scores),
        flags=flags,
        definition=definition,
    )
