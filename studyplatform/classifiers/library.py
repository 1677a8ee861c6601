"""Classifier definitions: format validation, the shipped library, and a protocol's classifier set.

A classifier is a plain dict (a YAML file in ``definitions/`` or written inline in a protocol)
in the format documented in docs/classifiers.md and checked by ``definitions/schema.json``. It
says which part of a conversation a judge model reads (the scope), what it is asked (per
language), which answers it may give (binary, ordinal or categorical levels), whether a parent
classifier's answer must open it first (the gate), and how the judge is called (endpoint and
model from the model-endpoint registry, generation settings).

This module is pure Python (no Django), like surveys/instruments.py, so notebooks and the CLI
can load and check definitions. Only ``protocol_section_errors`` asks the model-endpoint
registry whether a judge is registered, the same question the protocol validator asks for arms.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from studyplatform.core.schema_errors import schema_error_messages

DEFINITIONS_DIR = Path(__file__).resolve().parent / "definitions"
SCHEMA_PATH = DEFINITIONS_DIR / "schema.json"
SCOPES = ("user_message", "assistant_message", "exchange", "conversation", "window")
OUTPUT_TYPES = ("binary", "ordinal", "categorical")
# Label values the platform writes itself; a definition may not use them as answer codes, or a
# judge answering "unparseable" would be indistinguishable from an answer the platform refused.
RESERVED_CODES = frozenset({"unparseable", "gated_out", "error"})
REF_PATTERN = re.compile(r"^([a-z][a-z0-9_]{0,39})@([0-9]{1,7})$")
DEFAULT_GENERATION = {"temperature": 0, "max_tokens": 20}
# At most this many classifiers in one protocol: each one multiplies the judge calls of a run.
MAX_PROTOCOL_CLASSIFIERS = 40


class DefinitionError(ValueError):
    """A classifier definition does not follow the format. ``errors`` lists every problem as
    "path: message" ("(root)" for the whole definition)."""

    def __init__(self, errors: Sequence[str], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(self.errors))


@dataclass(frozen=True)
class Level:
    code: str
    label: Mapping[str, str]


@dataclass(frozen=True)
class Judge:
    """A registered endpoint and a model on it (never a URL or a key: DESIGN.md)."""

    endpoint: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.endpoint}/{self.model}"


@dataclass(frozen=True)
class Definition:
    key: str
    version: int
    title: Mapping[str, str]
    scope: str
    question: Mapping[str, str]
    output_type: str
    levels: tuple[Level, ...]
    window_turns: int | None = None
    gate_parent: str | None = None
    gate_levels: tuple[str, ...] = ()
    judge: Judge | None = None
    generation: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    rationale: str = ""
    note: str = ""
    shipped: bool = False

    @property
    def ref(self) -> str:
        return f"{self.key}@{self.version}"

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(level.code for level in self.levels)

    def text(self, mapping: Mapping[str, str], language: str) -> str:
        """`mapping` in `language` (pt-br and pt-BR alike), else English, else any."""
        wanted = language.lower()
        for lang, value in mapping.items():
            if lang.lower() == wanted:
                return value
        return mapping.get("en") or next(iter(mapping.values()))

    def has_language(self, language: str) -> bool:
        return any(lang.lower() == language.lower() for lang in self.question)

    @property
    def definition_hash(self) -> str:
        """What the judge sees of this definition (scope, question, answers, generation), hashed.

        Part of the result-cache key: a new version whose wording and answers are unchanged (a
        corrected title or citation) reuses every label, and one that changes what the judge is
        asked labels everything again. The version number itself is not part of it on purpose.
        """
        payload = {
            "scope": self.scope,
            "window_turns": self.window_turns,
            "question": dict(sorted((k.lower(), v) for k, v in self.question.items())),
            "output_type": self.output_type,
            "levels": [
                [lv.code, dict(sorted((k.lower(), v) for k, v in lv.label.items()))]
                for lv in self.levels
            ],
            "generation": self.generation_settings(),
        }
        return hashlib.sha256(
            json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()

    def rate_features(self) -> list[str]:
        """The analysis usage features this classifier gives (analysis/features/classifiers.py):
        ``cls_<key>_rate`` (binary: share with the first level; ordinal: above the first), or
        one ``cls_<key>_<level>_rate`` per level of a categorical classifier."""
        base = f"cls_{self.key}"
        if self.output_type == "categorical":
            return [f"{base}_{code}_rate" for code in self.codes]
        return [f"{base}_rate"]

    def generation_settings(self) -> dict[str, Any]:
        return {**DEFAULT_GENERATION, **dict(self.generation)}

    def summary(self) -> dict[str, Any]:
        """The definition as plain data (stored on a run, so it says what was asked)."""
        return {
            "key": self.key,
            "version": self.version,
            "ref": self.ref,
            "title": dict(self.title),
            "scope": self.scope,
            "window_turns": self.window_turns,
            "question": dict(self.question),
            "output_type": self.output_type,
            "levels": [{"code": lv.code, "label": dict(lv.label)} for lv in self.levels],
            "gate": {"classifier": self.gate_parent, "levels": list(self.gate_levels)}
            if self.gate_parent
            else None,
            "judge": {"endpoint": self.judge.endpoint, "model": self.judge.model}
            if self.judge
            else None,
            "generation": self.generation_settings(),
            "definition_hash": self.definition_hash,
            "shipped": self.shipped,
            "source": self.source,
        }


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _path(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def definition_errors(data: Any) -> list[str]:
    """Every problem with one definition, as "path: message"; empty when it is valid."""
    if not isinstance(data, Mapping):
        return ["(root): a classifier must be a mapping of fields (key, version, scope, ...)"]
    validator = jsonschema.Draft202012Validator(schema())
    errors: list[str] = []
    for err in validator.iter_errors(data):
        for leaf in err.context or [err]:
            for parts, message in schema_error_messages(leaf):
                errors.append(f"{_path(parts)}: {message}")
    if errors:
        return errors
    levels = data["output"]["levels"]
    codes = [lv["code"] for lv in levels]
    if len(set(codes)) != len(codes):
        errors.append("output.levels: every level needs its own code")
    for i, code in enumerate(codes):
        if code in RESERVED_CODES:
            errors.append(f"output.levels[{i}].code: {code!r} is reserved by the platform")
    if data["output"]["type"] == "binary" and len(codes) != 2:
        errors.append("output.levels: a binary classifier has exactly two levels")
    if data["scope"] == "window" and "window_turns" not in data:
        errors.append("window_turns: is required when scope is window (how many turns to read)")
    if data["scope"] != "window" and "window_turns" in data:
        errors.append("window_turns: only applies when scope is window")
    languages = {lang.lower() for lang in data["question"]}
    for i, level in enumerate(levels):
        missing = languages - {lang.lower() for lang in level["label"]}
        if missing:
            errors.append(
                f"output.levels[{i}].label: missing text for: " + ", ".join(sorted(missing))
            )
    gate = data.get("gate")
    if gate and gate["classifier"] == data["key"]:
        errors.append("gate.classifier: a classifier cannot gate itself")
    return errors


def load_definition(data: Any, *, shipped: bool = False, source: str | None = None) -> Definition:
    errors = definition_errors(data)
    if errors:
        raise DefinitionError(errors, source)
    gate = data.get("gate") or {}
    judge = data.get("judge")
    return Definition(
        key=data["key"],
        version=int(data["version"]),
        title=dict(data["title"]),
        scope=data["scope"],
        question=dict(data["question"]),
        output_type=data["output"]["type"],
        levels=tuple(Level(lv["code"], dict(lv["label"])) for lv in data["output"]["levels"]),
        window_turns=data.get("window_turns"),
        gate_parent=gate.get("classifier"),
        gate_levels=tuple(gate.get("levels", ())),
        judge=Judge(judge["endpoint"], judge["model"]) if judge else None,
        generation=dict(data.get("generation") or {}),
        source=data.get("source", ""),
        rationale=data.get("rationale", ""),
        note=data.get("note", ""),
        shipped=shipped,
    )


@functools.lru_cache(maxsize=1)
def shipped_definitions() -> dict[str, Definition]:
    """Every shipped definition by ``key@version`` (each file holds one version)."""
    found: dict[str, Definition] = {}
    for path in sorted(DEFINITIONS_DIR.glob("*.yaml")):
        definition = load_definition(
            yaml.safe_load(path.read_text(encoding="utf-8")), shipped=True, source=path.name
        )
        if definition.ref in found:
            raise DefinitionError([f"(root): {definition.ref} is defined twice"], path.name)
        found[definition.ref] = definition
    return found


def shipped_refs() -> list[str]:
    return sorted(shipped_definitions())


# -- a protocol's classifiers -------------------------------------------------------------------


@dataclass(frozen=True)
class ProtocolClassifiers:
    """The `classifiers` section of a protocol, resolved: what a run may use and on what terms."""

    definitions: tuple[Definition, ...]
    # The protocol allows chat text to leave the server for a judge at all.
    send_to_judge: bool
    # The consent checkbox (present in every consent document) a participant must have ticked.
    consent_checkbox: str
    # What a run sends unless the researcher chooses otherwise: "anonymized" or "raw".
    text: str

    def by_key(self) -> dict[str, Definition]:
        return {d.key: d for d in self.definitions}


def _with_judge(definition: Definition, judge: Judge | None) -> Definition:
    if definition.judge is not None or judge is None:
        return definition
    return dataclasses.replace(definition, judge=judge)


def protocol_classifiers(section: Mapping[str, Any] | None) -> ProtocolClassifiers | None:
    """The protocol's classifiers (a validated section), each with its judge; None without."""
    if not section:
        return None
    default = section.get("judge")
    judge = Judge(default["endpoint"], default["model"]) if default else None
    shipped = shipped_definitions()
    definitions = []
    for entry in section.get("run", []):
        definition = shipped[entry] if isinstance(entry, str) else load_definition(entry)
        definitions.append(_with_judge(definition, judge))
    return ProtocolClassifiers(
        definitions=tuple(definitions),
        send_to_judge=bool(section.get("send_to_judge")),
        consent_checkbox=section.get("consent_checkbox", ""),
        text=section.get("text", "anonymized"),
    )


def protocol_rate_features(section: Mapping[str, Any] | None) -> list[str]:
    """Every analysis rate name (``cls_<key>_rate`` …) the protocol's classifiers give."""
    classifiers = protocol_classifiers(section)
    if classifiers is None:
        return []
    return [name for d in classifiers.definitions for name in d.rate_features()]


PathParts = tuple[str | int, ...]


def protocol_section_errors(
    section: Mapping[str, Any], *, languages: Sequence[str], consent_keys: Sequence[set[str]]
) -> list[tuple[PathParts, str]]:
    """(place, message) for every problem with a protocol's `classifiers` section whose shape
    the protocol schema already checked. `consent_keys` holds each consent document's checkbox
    keys: the consent checkbox must be in every one, or some participants could never agree."""
    base: PathParts = ("classifiers",)
    errors: list[tuple[PathParts, str]] = []
    checkbox = section.get("consent_checkbox", "")
    if any(checkbox not in keys for keys in consent_keys):
        errors.append(
            (
                (*base, "consent_checkbox"),
                f"every consent document needs a checkbox with key {checkbox!r}: participants "
                "must agree before their chats are sent to a judge model",
            )
        )
    shipped = shipped_definitions()
    default_judge = section.get("judge")
    seen: dict[str, tuple[int, Definition]] = {}
    judges: list[tuple[PathParts, Judge]] = []
    if default_judge:
        judges.append(((*base, "judge"), Judge(default_judge["endpoint"], default_judge["model"])))
    for i, entry in enumerate(section.get("run", [])):
        path: PathParts = (*base, "run", i)
        if isinstance(entry, str):
            definition = shipped.get(entry)
            if definition is None:
                known = ", ".join(shipped_refs())
                errors.append((path, f"no shipped classifier {entry!r} (shipped: {known})"))
                continue
        else:
            problems = definition_errors(entry)
            for problem in problems:
                where, _, message = problem.partition(": ")
                inner = () if where == "(root)" else (where,)
                errors.append(((*path, *inner), message))
            if problems:
                continue
            definition = load_definition(entry)
            if definition.judge is not None:
                judges.append(((*path, "judge"), definition.judge))
            elif not default_judge:
                errors.append(
                    ((*path, "judge"), "no judge: set classifiers.judge or this classifier's judge")
                )
        if definition.key in seen:
            errors.append((path, f"classifier {definition.key!r} is listed twice"))
            continue
        if isinstance(entry, str) and not default_judge:
            errors.append(
                ((*base, "judge"), "is required for shipped classifiers (which judge answers)")
            )
        missing = [lang for lang in languages if not definition.has_language(lang)]
        if missing:
            errors.append((path, "no question for study language: " + ", ".join(missing)))
        if definition.gate_parent:
            parent = seen.get(definition.gate_parent)
            if parent is None:
                errors.append(
                    (
                        path,
                        f"gated by {definition.gate_parent!r}, which must be listed before it",
                    )
                )
            else:
                parent_def = parent[1]
                if parent_def.scope != definition.scope:
                    errors.append(
                        (
                            path,
                            f"gated by {parent_def.ref}, whose scope is {parent_def.scope}: "
                            "a gate must read the same part of the conversation",
                        )
                    )
                unknown = [lv for lv in definition.gate_levels if lv not in parent_def.codes]
                if unknown:
                    errors.append(
                        (
                            path,
                            f"gate levels {', '.join(unknown)} are not answers of "
                            f"{parent_def.ref} ({', '.join(parent_def.codes)})",
                        )
                    )
        seen[definition.key] = (i, definition)
    if len(seen) > MAX_PROTOCOL_CLASSIFIERS:
        errors.append(((*base, "run"), f"at most {MAX_PROTOCOL_CLASSIFIERS} classifiers"))
    errors += _judge_errors(judges)
    # A shipped entry without a judge reports the same problem once.
    return list(dict.fromkeys(errors))


def _judge_errors(judges: list[tuple[PathParts, Judge]]) -> list[tuple[PathParts, str]]:
    from studyplatform.core.model_endpoints import endpoint_get, registered_names

    errors = []
    for path, judge in judges:
        endpoint = endpoint_get(judge.endpoint)
        if endpoint is None:
            errors.append(
                (
                    (*path, "endpoint"),
                    f"no registered endpoint called {judge.endpoint!r}; registered endpoints: "
                    + ", ".join(registered_names()),
                )
            )
        elif not endpoint.allows(judge.model):
            errors.append(
                (
                    (*path, "model"),
                    f"{judge.model!r} is not an allowed model on endpoint {judge.endpoint} "
                    f"(allowed: {endpoint.models_text()})",
                )
            )
    return errors
