"""Where the designer shows a protocol validation error: which section, formset row and field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from studyplatform.studies.protocol.document import study_languages

from .fields import ARM_MODEL_FIELDS, ARM_PARAMETER_FIELDS, LIMIT_FIELDS, lang_field

_TOP = re.compile(r"^(?P<top>[a-z_]+)(?:\[(?P<index>\d+)\])?(?:\.(?P<rest>.*))?$")
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


@dataclass(frozen=True)
class ErrorPlace:
    """Where a validation error is shown: a section, optionally a formset row and a field."""

    section: str  # one of SECTIONS, "change_note", or "yaml" (only the YAML editor edits it)
    index: int | None = None
    field: str | None = None


def locate_error(path: str, doc: Mapping) -> ErrorPlace:
    """Map a ProtocolError path (`arms[1].model.name`) to the form field that edits it."""
    match = _TOP.match(path or "")
    if not match:
        return ErrorPlace("yaml")
    top, rest = match["top"], match["rest"] or ""
    index = int(match["index"]) if match["index"] is not None else None
    section = _SECTION_OF.get(top, "yaml")
    head = re.split(r"[.\[]", rest, maxsplit=1)[0] if rest else ""
    if section == "study":
        if index is not None:  # a bare list at the top level cannot be "study"
            return ErrorPlace("study")
        field = {
            "recruitment": rest.split(".")[-1] if rest.startswith("recruitment.") else None,
            "description": lang_field("description", study_languages(doc)[0]),
        }.get(head, head or None)
        return ErrorPlace("study", None, field)
    if section == "arms":
        if rest.startswith("model."):
            field = ARM_MODEL_FIELDS.get(rest.split(".")[1])
        elif rest.startswith("parameters."):
            name = rest.split(".")[1]
            field = name if name in ARM_PARAMETER_FIELDS else None
        elif head == "label":
            field = lang_field("label", study_languages(doc)[0])
        else:
            field = head if head in ("key", "weight", "system_prompt") else None
        return ErrorPlace("arms", index, field)
    if section == "consent":
        if rest == "signature":
            return ErrorPlace("consent", None, "signature")
        doc_match = re.match(r"^documents\[(\d+)\]\.?([a-z_]*)", rest)
        if doc_match:
            documents = doc.get("consent", {}).get("documents", [])
            i = int(doc_match[1])
            lang = documents[i].get("language", "en") if i < len(documents) else "en"
            name = doc_match[2] if doc_match[2] in ("version", "title", "body") else "checkboxes"
            if doc_match[2] == "language":
                return ErrorPlace("consent")
            return ErrorPlace("consent", None, lang_field(name, lang))
        return ErrorPlace("consent")
    if section == "screener":
        return ErrorPlace("screener", None, head if head in ("questions", "eligibility") else None)
    if section == "schedule":
        sched = re.match(r"^schedule\[(\d+)\]\.?(.*)$", rest)
        if not sched:
            return ErrorPlace("schedule")
        i, sub = int(sched[1]), sched[2]
        sub_head = re.split(r"[.\[]", sub, maxsplit=1)[0]
        if sub.startswith("rule."):
            name = re.split(r"[.\[]", sub[5:], maxsplit=1)[0]
            field = "rule_type" if name == "type" else name
        elif sub.startswith("reminders.offsets_hours"):
            field = "reminder_offsets"
        elif sub.startswith("reminders.max"):
            field = "reminder_max"
        elif sub_head in ("key", "instruments", "window_hours", "conditions"):
            field = sub_head
        else:
            field = None
        return ErrorPlace("schedule", i, field)
    if section == "safety":
        field = {
            "crisis_resources": lang_field("crisis", study_languages(doc)[0]),
            "detector": "lexicon",
        }.get(head, head or None)
        return ErrorPlace("safety", None, field)
    if section == "allocation":
        return ErrorPlace("allocation", None, head or None)
    if section == "limits":
        return ErrorPlace("limits", None, head if head in LIMIT_FIELDS else None)
    if section == "analysis":
        return ErrorPlace("analysis", None, head or None)
    return ErrorPlace(section)
