"""Where the designer shows a protocol validation error: which section, formset row and field.

Placement reads the error's structured place (`ProtocolError.parts`, keys and list indexes), so
the wording of the human-readable path can change without moving errors to the wrong field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from studyplatform.studies.protocol.document import study_languages
from studyplatform.studies.protocol.yaml_lines import PathParts

from .fields import ARM_MODEL_FIELDS, ARM_PARAMETER_FIELDS, LIMIT_FIELDS, lang_field

# The designer section that edits each top-level protocol key.
_SECTION_OF = {
    "study": "study",
    "arms": "arms",
    "allocation": "allocation",
    "consent": "consent",
    "screener": "screener",
    "surveys": "schedule",
    "safety": "safety",
    "limits": "limits",
    "analysis": "analysis",
    "change_note": "change_note",
}
_ARM_FIELDS = ("key", "weight", "system_prompt")
_CONSENT_TEXT_FIELDS = ("version", "title", "body")
_SCHEDULE_FIELDS = ("key", "instruments", "window_hours", "conditions")


@dataclass(frozen=True)
class ErrorPlace:
    """Where a validation error is shown: a section, optionally a formset row and a field."""

    section: str  # one of SECTIONS, "change_note", or "yaml" (only the YAML editor edits it)
    index: int | None = None
    field: str | None = None


def locate_error(parts: PathParts, doc: Mapping) -> ErrorPlace:
    """Map a ProtocolError's place (`("arms", 1, "model", "name")`) to the field that edits it."""
    if not parts or parts[0] not in _SECTION_OF:
        return ErrorPlace("yaml")
    section, rest = _SECTION_OF[parts[0]], tuple(parts[1:])
    # Per-language texts are shown on the field of the study's first language unless the error
    # names the language itself (`("arms", 0, "label", "pt-br")`).
    first = study_languages(doc)[0]
    match section, rest:
        case "study", ("recruitment", str(name), *_):
            return ErrorPlace("study", None, name)
        case "study", ("recruitment", *_):
            return ErrorPlace("study")
        case "study", ("description", *_):
            return ErrorPlace("study", None, lang_field("description", first))
        case "study", (str(name), *_):
            return ErrorPlace("study", None, name)
        case "arms", (int(i), *sub):
            return ErrorPlace("arms", i, _arm_field(sub, first))
        case "consent", ("signature", *_):
            return ErrorPlace("consent", None, "signature")
        case "consent", ("documents", int(i), *sub):
            return _consent_place(doc, i, sub)
        case "screener", ("questions" | "eligibility" as name, *_):
            return ErrorPlace("screener", None, name)
        case "schedule", ("schedule", int(i), *sub):
            return ErrorPlace("schedule", i, _schedule_field(sub))
        case "safety", ("crisis_resources", *_):
            return ErrorPlace("safety", None, lang_field("crisis", first))
        case "safety", ("detector", *_):
            return ErrorPlace("safety", None, "lexicon")
        case "safety" | "allocation" | "analysis", (str(name), *_):
            return ErrorPlace(section, None, name)
        case "limits", (str(name), *_) if name in LIMIT_FIELDS:
            return ErrorPlace("limits", None, name)
    return ErrorPlace(section)


def _arm_field(sub: list, first_language: str) -> str | None:
    match sub:
        case ["model", str(name), *_]:
            return ARM_MODEL_FIELDS.get(name)
        case ["parameters", str(name), *_] if name in ARM_PARAMETER_FIELDS:
            return name
        case ["label", str(language), *_]:
            return lang_field("label", language)
        case ["label"]:
            return lang_field("label", first_language)
        case [str(name), *_] if name in _ARM_FIELDS:
            return name
    return None


def _consent_place(doc: Mapping, index: int, sub: list) -> ErrorPlace:
    """Consent documents are edited per language: document i's fields carry its language."""
    documents = doc.get("consent", {}).get("documents", [])
    language = documents[index].get("language", "en") if index < len(documents) else "en"
    match sub:
        case ["language", *_]:
            return ErrorPlace("consent")
        case [str(name), *_] if name in _CONSENT_TEXT_FIELDS:
            return ErrorPlace("consent", None, lang_field(name, language))
    # The checkboxes, or the document as a whole: its checkbox lines are the field closest to it.
    return ErrorPlace("consent", None, lang_field("checkboxes", language))


def _schedule_field(sub: list) -> str | None:
    match sub:
        case ["rule", "type", *_]:
            return "rule_type"
        case ["rule", str(name), *_]:
            return name
        case ["reminders", "offsets_hours", *_]:
            return "reminder_offsets"
        case ["reminders", "max", *_]:
            return "reminder_max"
        case [str(name), *_] if name in _SCHEDULE_FIELDS:
            return name
    return None
