"""Validate a protocol document: structure (JSON Schema) and meaning (cross-references).

Every error names the path, says what is wrong in words a researcher can act on, and carries the
line it refers to. Pure Python apart from one question to the model-endpoint registry (is each
arm's endpoint registered, and does it allow the model?), so `protocol validate` is the same
check the API and the console run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jsonschema import Draft202012Validator

from studyplatform.core.input_limits import InputRejected, check_value
from studyplatform.core.schema_errors import schema_error_messages

from . import factors, translations
from .tasks import task_errors
from .voice import voice_errors
from .yaml_lines import (
    MAX_PROTOCOL_BYTES,
    MAX_PROTOCOL_DEPTH,
    PathParts,
    YamlRefused,
    YamlSyntaxError,
    line_for,
    load_with_lines,
    path_text,
)

SCHEMA_PATH = Path(__file__).with_name("protocol.schema.json")
FORMAT = "studyplatform/v1"
DEFAULT_LANGUAGES = ["en"]
# No list or mapping in a protocol legitimately has more entries (the schema's own maxItems are
# tighter); checked before the schema runs, whose uniqueItems is quadratic in a list's length.
MAX_PROTOCOL_ITEMS = 500


@dataclass(frozen=True)
class ProtocolError:
    """One problem in a protocol.

    `parts` says where, as the keys and list indexes leading to the field
    (`("arms", 0, "model", "endpoint")`), so code can act on the place (the console puts the
    error on the form field that edits it) without parsing text; `path` is the same place in the
    notation people read (`arms[0].model.endpoint`), which is what the CLI and the API show.
    """

    parts: PathParts
    message: str
    line: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.parts, str):
            # A dotted string here would silently become one opaque key; fail where it is made.
            raise TypeError("ProtocolError takes its place as a tuple of keys and indexes")
        object.__setattr__(self, "parts", tuple(self.parts))

    @property
    def path(self) -> str:
        return path_text(self.parts)

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path or 'document'}: {self.message}{where}"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "message": self.message, "line": self.line}


class ProtocolInvalid(ValueError):
    def __init__(self, errors: list[ProtocolError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class ProtocolRefused(ProtocolInvalid):
    """The input exceeds a ceiling (size, nesting, anchors/aliases, values no database holds)
    and was refused before it was processed. Endpoints answer 400 even where an invalid
    protocol is otherwise a normal answer (the validate endpoints)."""


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


# What the protocol schema's patterns mean, for the researcher.
_PATTERN_HINTS = {
    "^([01][0-9]|2[0-3]):[0-5][0-9]$": "must be a time of day as HH:MM (24-hour)",
    "^[a-z][a-z0-9_]{0,39}$": "must start with a lowercase letter and contain only "
    "lowercase letters, digits and underscores (at most 40)",
    "^[a-z0-9][a-z0-9-]{1,79}$": "must be 2-80 lowercase letters, digits or hyphens",
    "^https?://": "must be a URL starting with http:// or https://",
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}$": "must be a date as YYYY-MM-DD",
    "^[a-z0-9][a-z0-9_-]{0,39}$": "must be the name of a registered endpoint",
}


def _schema_error_to_protocol(err) -> list[ProtocolError]:
    return [
        ProtocolError(tuple(parts), message)
        for parts, message in schema_error_messages(err, pattern_hints=_PATTERN_HINTS)
    ]


def _structural_errors(doc: Any) -> list[ProtocolError]:
    validator = Draft202012Validator(schema())
    errors: list[ProtocolError] = []
    for err in validator.iter_errors(doc):
        # allOf/if-then wrappers report their inner errors as context; flatten them.
        leaves = err.context or [err]
        for leaf in leaves:
            errors.extend(_schema_error_to_protocol(leaf))
    return errors


def _languages(doc: dict) -> list[str]:
    return doc.get("study", {}).get("languages") or DEFAULT_LANGUAGES


def _text_languages_errors(
    value: Any, path: PathParts, languages: list[str]
) -> list[ProtocolError]:
    if isinstance(value, dict):
        missing = [lang for lang in languages if not value.get(lang)]
        if missing:
            return [ProtocolError(path, "missing text for: " + ", ".join(missing))]
    return []


def _duplicate_keys(items: list, path: PathParts, field: str = "key") -> list[ProtocolError]:
    seen: set = set()
    errors = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and field in item:
            if item[field] in seen:
                errors.append(ProtocolError((*path, i, field), f"duplicate {field}"))
            seen.add(item[field])
    return errors


def _hhmm(value: str) -> int:
    h, m = value.split(":")
    return int(h) * 60 + int(m)


@dataclass(frozen=True)
class InstrumentLibrary:
    """What the validator needs from the survey instrument library.

    The library lives in the surveys app, above studies in the layer order
    (tests/core/test_import_layers.py), so studies cannot import it; ``SurveysConfig.ready()``
    registers it here instead.

    shipped: {instrument key: (item ids, score names)} for the instruments the platform ships.
    validate: the problems with one custom instrument definition, each "path: message" with
        "(root)" for the whole instrument; empty when it is valid.
    """

    shipped: Callable[[], dict[str, tuple[set[str], set[str]]]]
    validate: Callable[[Any], list[str]]


_instrument_library: InstrumentLibrary | None = None


def instrument_library_register(library: InstrumentLibrary) -> None:
    """Called from ``SurveysConfig.ready()`` (registering again replaces it)."""
    global _instrument_library
    _instrument_library = library


@dataclass(frozen=True)
class ClassifierLibrary:
    """What the validator needs from the conversation-classifier library.

    The library lives in the classifiers app, above studies in the layer order, so
    ``ClassifiersConfig.ready()`` registers it here, as surveys registers its instruments.

    section_errors: (place, message) for each problem with a `classifiers` section whose shape
        the schema checked, given the study's languages and each consent document's checkbox
        keys.
    """

    section_errors: Callable[..., list[tuple[PathParts, str]]]
    # The analysis rate names (cls_<key>_rate, cls_<key>_<level>_rate) a valid section gives,
    # for checking classifier-rate outcomes of the analysis plan.
    rate_features: Callable[[Any], list[str]] | None = None


_classifier_library: ClassifierLibrary | None = None


def classifier_library_register(library: ClassifierLibrary) -> None:
    """Called from ``ClassifiersConfig.ready()`` (registering again replaces it)."""
    global _classifier_library
    _classifier_library = library


def _classifier_errors(doc: dict) -> list[ProtocolError]:
    section = doc.get("classifiers")
    if not section or _classifier_library is None:
        return []
    consent_keys = [
        {box["key"] for box in cdoc["checkboxes"]} for cdoc in doc["consent"]["documents"]
    ]
    return [
        ProtocolError(parts, message)
        for parts, message in _classifier_library.section_errors(
            section, languages=_languages(doc), consent_keys=consent_keys
        )
    ]


def _classifier_outcome_errors(doc: dict, index: int, outcome: str) -> list[ProtocolError]:
    """A classifier-rate outcome must name a rate of a classifier the protocol runs."""
    where = ("analysis", "outcomes", index)
    section = doc.get("classifiers")
    if not section or not section.get("run"):
        return [
            ProtocolError(
                where,
                f"{outcome!r} is a classifier rate, but the protocol runs no classifiers "
                "(add the classifier under classifiers.run)",
            )
        ]
    if _classifier_library is None or _classifier_library.rate_features is None:
        return []
    try:
        rates = _classifier_library.rate_features(section)
    except Exception:
        # An invalid section (unknown shipped classifier, bad definition) has its own errors
        # from _classifier_errors; the outcome cannot be checked against it.
        return []
    if outcome in rates:
        return []
    return [
        ProtocolError(
            where,
            f"no classifier in classifiers.run gives {outcome!r} (rates: {', '.join(rates)})",
        )
    ]


def _instrument_index(doc: dict) -> dict[str, tuple[set[str], set[str]]] | None:
    """{instrument key: (item ids, score names)} for shipped and custom instruments.

    None when no survey library is registered (the surveys app is not installed), in which case
    references are not checked.
    """
    library = _instrument_library
    if library is None:
        return None
    index = library.shipped()
    for custom in doc.get("surveys", {}).get("instruments", []) or []:
        if library.validate(custom):
            index[custom["key"]] = (set(), set())  # its own errors are reported separately
            continue
        items = {item["id"] for item in custom.get("items", [])}
        scores = {score["name"] for score in custom.get("scores", [])}
        index[custom["key"]] = (items, scores)
    return index


def _semantic_errors(doc: dict) -> list[ProtocolError]:
    errors: list[ProtocolError] = []
    study = doc["study"]
    languages = _languages(doc)

    try:
        ZoneInfo(study["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(
            ProtocolError(
                ("study", "timezone"),
                f"unknown time zone {study['timezone']!r} "
                "(use an IANA name such as America/Sao_Paulo)",
            )
        )

    arms = doc["arms"]
    errors += _duplicate_keys(arms, ("arms",))
    total_weight = sum(a.get("weight", 1) for a in arms)

    allocation = doc.get("allocation", {})
    method = allocation.get("method", "permuted_blocks" if len(arms) > 1 else "simple")
    block_sizes = allocation.get("block_sizes", [])
    for i, size in enumerate(block_sizes):
        if size % total_weight:
            errors.append(
                ProtocolError(
                    ("allocation", "block_sizes", i),
                    f"must be a multiple of the arms' total weight ({total_weight})",
                )
            )
    questions = doc.get("screener", {}).get("questions", [])
    question_keys = {q["key"] for q in questions}
    if method == "stratified_blocks" and not allocation.get("strata"):
        errors.append(
            ProtocolError(
                ("allocation", "strata"),
                "stratified_blocks needs at least one screener question to stratify by",
            )
        )
    for i, stratum in enumerate(allocation.get("strata", [])):
        if stratum not in question_keys:
            errors.append(
                ProtocolError(
                    ("allocation", "strata", i), f"no screener question with key {stratum!r}"
                )
            )

    for i, arm in enumerate(arms):
        errors += _text_languages_errors(arm.get("label"), ("arms", i, "label"), languages)

    docs = doc["consent"]["documents"]
    by_lang: dict[str, list[int]] = {}
    for i, cdoc in enumerate(docs):
        by_lang.setdefault(cdoc["language"], []).append(i)
        path = ("consent", "documents", i)
        errors += _duplicate_keys(cdoc["checkboxes"], (*path, "checkboxes"))
        if not any(c.get("required") for c in cdoc["checkboxes"]):
            errors.append(
                ProtocolError(
                    (*path, "checkboxes"),
                    "at least one checkbox must be required (the agreement)",
                )
            )
    for lang in languages:
        if lang not in by_lang:
            errors.append(
                ProtocolError(
                    ("consent", "documents"), f"no consent document for study language {lang!r}"
                )
            )
    for lang, idxs in by_lang.items():
        if len(idxs) > 1:
            errors.append(
                ProtocolError(
                    ("consent", "documents", idxs[1], "language"),
                    f"more than one consent document for {lang!r}",
                )
            )
        if lang not in languages:
            errors.append(
                ProtocolError(
                    ("consent", "documents", idxs[0], "language"),
                    f"{lang!r} is not one of the study's languages",
                )
            )
    # Choices must mean the same thing in every language, or consent records are not comparable.
    key_sets = {
        tuple(sorted(c["key"] for c in docs[i]["checkboxes"]))
        for i in [v[0] for v in by_lang.values()]
    }
    if len(key_sets) > 1:
        errors.append(
            ProtocolError(
                ("consent", "documents"),
                "every language's consent form must have the same checkbox keys",
            )
        )

    errors += _duplicate_keys(questions, ("screener", "questions"))
    for i, q in enumerate(questions):
        path = ("screener", "questions", i)
        errors += _text_languages_errors(q.get("text"), (*path, "text"), languages)
        if q["type"] in ("single_choice", "multiple_choice") and len(q.get("options", [])) < 2:
            errors.append(
                ProtocolError((*path, "options"), "a choice question needs at least two options")
            )
        if "min" in q and "max" in q and q["min"] > q["max"]:
            errors.append(ProtocolError((*path, "min"), "must not be greater than max"))
    rules = doc.get("screener", {}).get("eligibility", [])
    errors += _duplicate_keys(rules, ("screener", "eligibility"))
    for i, rule in enumerate(rules):
        if rule["question"] not in question_keys:
            errors.append(
                ProtocolError(
                    ("screener", "eligibility", i, "question"),
                    f"no screener question with key {rule['question']!r}",
                )
            )
        if rule["op"] in ("in", "not_in") and not isinstance(rule["value"], list):
            errors.append(
                ProtocolError(
                    ("screener", "eligibility", i, "value"), f"must be a list for {rule['op']}"
                )
            )

    surveys = doc.get("surveys", {})
    errors += _duplicate_keys(surveys.get("instruments", []), ("surveys", "instruments"))
    errors += _custom_instrument_errors(surveys.get("instruments", []))
    schedule = surveys.get("schedule", [])
    errors += _duplicate_keys(schedule, ("surveys", "schedule"))
    index = _instrument_index(doc)
    known = set(index) if index is not None else None
    for i, entry in enumerate(schedule):
        path = ("surveys", "schedule", i)
        if known is not None:
            for j, key in enumerate(entry["instruments"]):
                if key not in known:
                    errors.append(
                        ProtocolError((*path, "instruments", j), f"unknown instrument {key!r}")
                    )
        errors += _rule_errors(entry["rule"], (*path, "rule"))
        reminders = entry.get("reminders", {})
        offsets = reminders.get("offsets_hours", [])
        window = entry.get("window_hours")
        if window is not None:
            for j, off in enumerate(offsets):
                if off >= window:
                    errors.append(
                        ProtocolError(
                            (*path, "reminders", "offsets_hours", j),
                            f"must be earlier than the window's end ({window} hours)",
                        )
                    )
        if offsets != sorted(offsets):
            errors.append(
                ProtocolError((*path, "reminders", "offsets_hours"), "must be in increasing order")
            )

    safety = doc["safety"]
    errors += _text_languages_errors(
        safety["crisis_resources"], ("safety", "crisis_resources"), languages
    )
    for i, flag in enumerate(safety.get("flag_items", [])):
        if index is None:
            break
        if flag["instrument"] not in index:
            errors.append(
                ProtocolError(
                    ("safety", "flag_items", i, "instrument"),
                    f"unknown instrument {flag['instrument']!r}",
                )
            )
        elif index[flag["instrument"]][0] and flag["item"] not in index[flag["instrument"]][0]:
            errors.append(
                ProtocolError(
                    ("safety", "flag_items", i, "item"),
                    f"{flag['instrument']} has no item {flag['item']!r}",
                )
            )

    analysis = doc.get("analysis", {})
    used = {k for e in schedule for k in e["instruments"]}
    for i, outcome in enumerate(analysis.get("outcomes", [])):
        if outcome.startswith("cls_"):
            errors += _classifier_outcome_errors(doc, i, outcome)
            continue
        instrument, score = outcome.split(".", 1)
        if instrument not in used:
            errors.append(
                ProtocolError(
                    ("analysis", "outcomes", i),
                    f"instrument {instrument!r} is not in the survey schedule",
                )
            )
        elif index is not None and index[instrument][1] and score not in index[instrument][1]:
            names = ", ".join(sorted(index[instrument][1]))
            errors.append(
                ProtocolError(
                    ("analysis", "outcomes", i),
                    f"{instrument} has no score {score!r} (scores: {names})",
                )
            )
    errors += _analysis_plan_errors(doc, method)
    errors += factors.factor_errors(doc, languages)
    errors += translations.translation_errors(doc, languages)
    return errors


# Screener question types that give one number or category per person (analysis covariates).
COVARIATE_QUESTION_TYPES = ("number", "yes_no", "single_choice")


def _analysis_plan_errors(doc: dict, method: str) -> list[ProtocolError]:
    """Covariates, the arm contrast and the primary family name things the protocol defines."""
    analysis = doc.get("analysis", {})
    errors: list[ProtocolError] = []
    questions = {q["key"]: q["type"] for q in doc.get("screener", {}).get("questions", [])}
    strata = doc.get("allocation", {}).get("strata", []) if method == "stratified_blocks" else []
    for i, name in enumerate(analysis.get("covariates", [])):
        prefix, _, key = name.partition(".")
        where = ("analysis", "covariates", i)
        if prefix == "screener":
            if key not in questions:
                errors.append(ProtocolError(where, f"no screener question with key {key!r}"))
            elif questions[key] not in COVARIATE_QUESTION_TYPES:
                errors.append(
                    ProtocolError(
                        where,
                        f"screener question {key!r} is {questions[key]}; only number, yes_no "
                        "and single_choice answers can be covariates",
                    )
                )
        elif prefix == "stratum":
            if key not in strata:
                listed = ", ".join(strata) or "none: allocation is not stratified_blocks"
                errors.append(
                    ProtocolError(where, f"{key!r} is not a stratification factor ({listed})")
                )
        else:
            errors.append(
                ProtocolError(
                    where,
                    f"unknown covariate {name!r}: use screener.<question key> or "
                    "stratum.<stratification factor>",
                )
            )
    reference = analysis.get("arm_contrast", {}).get("reference")
    if reference is not None and reference not in {a["key"] for a in doc["arms"]}:
        errors.append(
            ProtocolError(
                ("analysis", "arm_contrast", "reference"), f"no arm with key {reference!r}"
            )
        )
    outcomes = set(analysis.get("outcomes", []))
    for i, outcome in enumerate(analysis.get("multiplicity", {}).get("outcomes", [])):
        if outcome not in outcomes:
            errors.append(
                ProtocolError(
                    ("analysis", "multiplicity", "outcomes", i),
                    f"{outcome!r} is not one of analysis.outcomes",
                )
            )
    return errors


def _custom_instrument_errors(instruments: list) -> list[ProtocolError]:
    library = _instrument_library
    if library is None:
        return []
    errors = []
    for i, data in enumerate(instruments):
        for problem in library.validate(data):
            # The instrument library reports "path: message", with "(root)" for the whole thing.
            # The instrument's own path stays one opaque key: the designer has no form for custom
            # instruments, so nothing needs to act on the place below the instrument.
            path, _, message = problem.partition(": ")
            inner = () if path == "(root)" else (path,)
            errors.append(ProtocolError(("surveys", "instruments", i, *inner), message))
    return errors


def _rule_errors(rule: dict, path: PathParts) -> list[ProtocolError]:
    errors = []
    kind = rule["type"]
    if kind == "random_ema" and "between" in rule:
        start, end = (_hhmm(t) for t in rule["between"])
        if end <= start:
            errors.append(ProtocolError((*path, "between"), "the window must end after it starts"))
        else:
            needed = (rule["per_day"] - 1) * rule.get("min_gap_minutes", 0)
            if needed > end - start:
                errors.append(
                    ProtocolError(
                        (*path, "min_gap_minutes"),
                        f"{rule['per_day']} prompts {rule.get('min_gap_minutes', 0)} minutes apart "
                        f"do not fit in a {end - start}-minute window",
                    )
                )
    if kind == "fixed_dates":
        for j, value in enumerate(rule.get("dates", [])):
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                errors.append(ProtocolError((*path, "dates", j), f"{value!r} is not a real date"))
    if kind == "recurring" and "end_day" in rule and rule["end_day"] < rule.get("start_day", 0):
        errors.append(ProtocolError((*path, "end_day"), "must not be before start_day"))
    return errors


def _retention_errors(doc: dict) -> list[ProtocolError]:
    """The retention section: a delay only means something when chat text is deleted."""
    retention = doc.get("retention")
    if not isinstance(retention, dict):
        return []
    action = retention.get("chat_text_after_close")
    if action == "delete" and "after_days" not in retention:
        return [
            ProtocolError(
                ("retention", "after_days"),
                "is required when chat_text_after_close is delete: the number of days after "
                "the study closes before chat text is deleted",
            )
        ]
    if action == "keep" and "after_days" in retention:
        return [
            ProtocolError(
                ("retention", "after_days"),
                "only applies when chat_text_after_close is delete; remove it, or set "
                "chat_text_after_close to delete",
            )
        ]
    return []


def validate_document(doc: Any) -> list[ProtocolError]:
    """All errors in a parsed document (without line numbers)."""
    if not isinstance(doc, dict):
        return [
            ProtocolError(
                (),
                "the protocol must be a mapping of sections (format, study, "
                "arms, consent, safety, ...)",
            )
        ]
    # Generated arms (arms_from_factors) are checked like listed ones; their errors are moved
    # to the setting that wrote them.
    doc, provenance, generation_errors = factors.expand(doc)
    if generation_errors:
        return _dedupe(generation_errors)
    errors = _structural_errors(doc)
    if factors.GENERATOR in doc and provenance is None:
        # The generator could not run (the schema says why); the arms it stands for are not
        # missing.
        errors = [e for e in errors if e.parts != ("arms",)]
    if provenance is not None and any(e.parts[:1] == ("factors",) for e in errors):
        # A generated arm's key, label and levels are the factors' own: their errors are the
        # factors' errors, reported there once rather than again for every generated arm.
        errors = [e for e in errors if not factors.from_levels(e)]
    if errors:
        # Meaning checks assume the structure is right; report structure first.
        return _dedupe(_remapped(_with_endpoint_names(errors), provenance, doc))
    try:
        # Free-form parts (custom instruments) have no schema maxima; no database column holds
        # an integer beyond 64 bits.
        check_value(doc, max_depth=MAX_PROTOCOL_DEPTH, max_items=MAX_PROTOCOL_ITEMS)
    except InputRejected as exc:
        return [ProtocolError(exc.parts, exc.message)]
    from .requirements import requirements_errors  # imports this module: import when used

    return _dedupe(
        _remapped(
            _semantic_errors(doc)
            + _retention_errors(doc)
            + _model_endpoint_errors(doc)
            + _classifier_errors(doc)
            + _task_errors(doc)
            + requirements_errors(doc)
            + voice_errors(doc),
            provenance,
            doc,
        )
    )


def _task_errors(doc: dict) -> list[ProtocolError]:
    return [ProtocolError(parts, message) for parts, message in task_errors(doc, _languages(doc))]


def _remapped(errors: list[ProtocolError], provenance, doc: dict) -> list[ProtocolError]:
    if provenance is None:
        return errors
    return [factors.remap_generated(e, provenance, doc["arms"]) for e in errors]


# Which endpoints exist is platform configuration (environment and database), so these two ask
# the model-endpoint registry; everything else in this module is pure.


def _model_endpoint_errors(doc: dict) -> list[ProtocolError]:
    from studyplatform.core.model_endpoints import protocol_model_errors

    return [ProtocolError(parts, message) for parts, message in protocol_model_errors(doc["arms"])]


def _with_endpoint_names(errors: list[ProtocolError]) -> list[ProtocolError]:
    """Fill in the registered endpoint names where a message asks for them ({endpoints}), and
    list them when an arm's model has no endpoint."""
    needs = [e for e in errors if "{endpoints}" in e.message or _is_arm_endpoint(e)]
    if not needs:
        return errors
    from studyplatform.core.model_endpoints import registered_names

    names = ", ".join(registered_names())
    out = []
    for e in errors:
        if "{endpoints}" in e.message:
            e = ProtocolError(e.parts, e.message.replace("{endpoints}", names), e.line)
        elif _is_arm_endpoint(e) and e.message == "this field is required":
            e = ProtocolError(e.parts, f"{e.message} (registered endpoints: {names})", e.line)
        out.append(e)
    return out


def _is_arm_endpoint(error: ProtocolError) -> bool:
    return error.parts[-2:] == ("model", "endpoint")


def _dedupe(errors: list[ProtocolError]) -> list[ProtocolError]:
    seen = set()
    out = []
    for e in errors:
        if (e.parts, e.message) not in seen:
            seen.add((e.parts, e.message))
            out.append(e)
    return out


def _refuse_unbounded(doc: Any, lines: dict[str, int] | None = None) -> None:
    """Raise ProtocolRefused if parsed data exceeds the protocol's ceilings."""
    try:
        # Integer ranges are left to the schema, which names each field's own maximum.
        check_value(
            doc, max_depth=MAX_PROTOCOL_DEPTH, max_items=MAX_PROTOCOL_ITEMS, max_abs_int=None
        )
    except InputRejected as exc:
        line = line_for(exc.path, lines) if lines is not None else None
        raise ProtocolRefused([ProtocolError(exc.parts, exc.message, line)]) from None
    if lines is None:
        # JSON data has no text size to check; its compact encoding stands in for it.
        size = len(json.dumps(doc, separators=(",", ":")).encode("utf-8"))
        if size > MAX_PROTOCOL_BYTES:
            raise ProtocolRefused(
                [
                    ProtocolError(
                        (),
                        f"the document is too large ({size // 1024} KB; "
                        f"at most {MAX_PROTOCOL_BYTES // 1024} KB)",
                    )
                ]
            )


def parse_protocol_text(text: str) -> dict[str, Any]:
    """Parse and validate YAML (or JSON) text. Raises ProtocolInvalid with line-numbered errors
    (ProtocolRefused when the text exceeds a ceiling)."""
    try:
        doc, lines = load_with_lines(text)
    except YamlRefused as exc:
        raise ProtocolRefused([ProtocolError(exc.parts, exc.message, exc.line)]) from None
    except YamlSyntaxError as exc:
        raise ProtocolInvalid([ProtocolError(exc.parts, exc.message, exc.line)]) from None
    _refuse_unbounded(doc, lines)
    errors = validate_document(doc)
    if errors:
        raise ProtocolInvalid(
            [ProtocolError(e.parts, e.message, line_for(e.path, lines)) for e in errors]
        )
    return factors.for_storage(doc)


def parse_protocol_data(doc: Any) -> dict[str, Any]:
    """Validate already-parsed data (e.g. a JSON API body). Raises ProtocolInvalid."""
    _refuse_unbounded(doc)
    errors = validate_document(doc)
    if errors:
        raise ProtocolInvalid(errors)
    return factors.for_storage(doc)
