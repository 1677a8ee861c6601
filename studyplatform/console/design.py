"""Protocol designer helpers: protocol dict <-> section form data, error placement and calendar
rows. (The launch checklist is a domain rule: it lives in studyplatform/studies/launch.py.)

Plain data in, plain data out: no database, no request. The only Django import is gettext, for
researcher-facing error wording. Views build forms from `section_initial` and merge
cleaned form data back with `apply_section`; the merged document is then validated by the
protocol validator exactly as an uploaded YAML file would be.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from django.utils.translation import gettext as _

from studyplatform.studies.protocol.document import study_languages, text_split
from studyplatform.studies.protocol.validate import schema
from surveys.schedule_rules import (
    EVENT_RULES,
    ParticipantContext,
    ScheduleError,
    all_occurrences,
)

SECTIONS = (
    "study",
    "arms",
    "allocation",
    "consent",
    "screener",
    "schedule",
    "safety",
    "limits",
    "analysis",
)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The schedule rule fields each rule type accepts (mirrors protocol.schema.json's `rule`).
RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "enrollment": ("delay_minutes",),
    "recurring": ("every_days", "at", "start_day", "end_day"),
    "weekdays": ("days", "at"),
    "fixed_dates": ("dates", "at"),
    "random_ema": ("per_day", "between", "min_gap_minutes", "days"),
    "after_chat_session": ("gap_minutes", "max_per_day"),
    "after_messages": ("count", "repeat"),
    "no_chat": ("days",),
    "exit": ("at",),
}
ARM_MODEL_FIELDS = {
    "endpoint": "endpoint",
    "name": "model_name",
    "context_tokens": "context_tokens",
}
ARM_PARAMETER_FIELDS = ("temperature", "max_tokens")
LIMIT_FIELDS = ("messages_per_minute", "tokens_per_day", "max_message_chars")


def platform_languages() -> list[str]:
    """Every language a protocol may use (the schema's `language` enum)."""
    return list(schema()["$defs"]["language"]["enum"])


def lang_field(prefix: str, language: str) -> str:
    """A form field name for one language's text (`pt-br` is not a valid template name)."""
    return f"{prefix}_{language.replace('-', '_')}"


def default_allocation_method(doc: Mapping) -> str:
    """The method the validator assumes when a protocol does not name one."""
    return "permuted_blocks" if len(doc.get("arms", [])) > 1 else "simple"


def text_join(values: Mapping[str, str]) -> str | dict[str, str] | None:
    """Per-language strings back to a protocol text: one filled field is a plain string."""
    filled = {lang: text for lang, text in values.items() if text and text.strip()}
    if not filled:
        return None
    if len(filled) == 1:
        return next(iter(filled.values()))
    return filled


def csv_list(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\n]", text or "") if part.strip()]


def _set_or_drop(target: dict, key: str, value: Any) -> None:
    """Optional protocol fields are omitted rather than written as empty values."""
    if value is None or value == "" or value == []:
        target.pop(key, None)
    else:
        target[key] = value


def _number(value: Any) -> Any:
    """Decimal/float form values as the plainest JSON number (7.0 -> 7)."""
    if value is None:
        return None
    number = float(value)
    return int(number) if number.is_integer() else number


# --- checkbox lines for consent ----------------------------------------------------------------

_TRUE = {"required", "yes", "true", "1", "y"}
_FALSE = {"optional", "no", "false", "0", "n", ""}


def checkboxes_to_lines(checkboxes: list[dict]) -> str:
    return "\n".join(
        f"{c['key']} | {c['label']} | {'required' if c.get('required') else 'optional'}"
        for c in checkboxes
    )


def lines_to_checkboxes(text: str) -> list[dict]:
    """Parse "key | label | required" lines; ValueError names the line that is wrong."""
    out = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
            raise ValueError(
                _("line %(n)d: write key | label | required (or optional)") % {"n": number}
            )
        flag = parts[2].lower() if len(parts) == 3 else ""
        if flag not in _TRUE | _FALSE:
            raise ValueError(
                _("line %(n)d: the third part must be required or optional") % {"n": number}
            )
        out.append({"key": parts[0], "label": parts[1], "required": flag in _TRUE})
    return out


# --- flag items for safety ---------------------------------------------------------------------


def flags_to_lines(flags: list[dict]) -> str:
    return "\n".join(
        " | ".join(
            str(v)
            for v in (f["instrument"], f["item"], f["op"], f["value"], f.get("severity", ""))
            if v != ""
        )
        for f in flags
    )


def lines_to_flags(text: str) -> list[dict]:
    """Parse "instrument | item | op | value | severity" lines."""
    out = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) not in (4, 5):
            raise ValueError(
                _("line %(n)d: write instrument | item | op | value | severity") % {"n": number}
            )
        try:
            value = _number(parts[3])
        except ValueError:
            raise ValueError(_("line %(n)d: the value must be a number") % {"n": number}) from None
        flag = {"instrument": parts[0], "item": parts[1], "op": parts[2], "value": value}
        if len(parts) == 5 and parts[4]:
            flag["severity"] = parts[4]
        out.append(flag)
    return out


# --- sections: initial form data -----------------------------------------------------------------


def section_initial(doc: Mapping, section: str) -> Any:
    """Initial data for a section's form (a dict) or formset (a list of dicts)."""
    languages = platform_languages()
    if section == "study":
        meta = doc.get("study", {})
        recruitment = meta.get("recruitment", {})
        initial = {
            "title": meta.get("title", ""),
            "timezone": meta.get("timezone", ""),
            "languages": study_languages(doc),
            "duration_days": meta.get("duration_days"),
            "target_enrollment": meta.get("target_enrollment"),
            "panel": recruitment.get("panel", "none"),
            "collect_email": recruitment.get("collect_email", True),
            "completion_url": recruitment.get("completion_url", ""),
        }
        for lang, text in text_split(meta.get("description", ""), languages).items():
            initial[lang_field("description", lang)] = text
        return initial
    if section == "arms":
        rows = []
        for arm in doc.get("arms", []):
            model = arm.get("model", {})
            params = arm.get("parameters", {})
            row = {"key": arm.get("key", ""), "weight": arm.get("weight", 1)}
            row.update({field: model.get(key) for key, field in ARM_MODEL_FIELDS.items()})
            row.update({p: params.get(p) for p in ARM_PARAMETER_FIELDS})
            row["system_prompt"] = arm.get("system_prompt", "")
            for lang, text in text_split(arm.get("label", ""), languages).items():
                row[lang_field("label", lang)] = text
            rows.append(row)
        return rows
    if section == "allocation":
        allocation = doc.get("allocation", {})
        return {
            "method": allocation.get("method", default_allocation_method(doc)),
            "block_sizes": ", ".join(str(size) for size in allocation.get("block_sizes", [])),
            "strata": ", ".join(allocation.get("strata", [])),
            "disclose_to_participant": allocation.get("disclose_to_participant", False),
        }
    if section == "consent":
        consent = doc.get("consent", {})
        initial = {"signature": consent.get("signature", "checkbox")}
        for cdoc in consent.get("documents", []):
            lang = cdoc.get("language", "")
            initial[lang_field("version", lang)] = cdoc.get("version")
            initial[lang_field("title", lang)] = cdoc.get("title", "")
            initial[lang_field("body", lang)] = cdoc.get("body", "")
            boxes = cdoc.get("checkboxes", [])
            initial[lang_field("checkboxes", lang)] = checkboxes_to_lines(boxes)
        return initial
    if section == "screener":
        screener = doc.get("screener", {})
        # The screener's nested, per-language questions read best as a small YAML list.
        return {
            "questions": _yaml_list(screener.get("questions", [])),
            "eligibility": _yaml_list(screener.get("eligibility", [])),
        }
    if section == "schedule":
        return [_entry_initial(e) for e in doc.get("surveys", {}).get("schedule", [])]
    if section == "safety":
        safety = doc.get("safety", {})
        detector = safety.get("detector", {})
        initial = {
            "response_time_hours": safety.get("response_time_hours"),
            "alert_recipients": "\n".join(safety.get("alert_recipients", [])),
            "lexicon": detector.get("lexicon", True),
            "moderation": detector.get("moderation", False),
            "flag_items": flags_to_lines(safety.get("flag_items", [])),
        }
        for lang, text in text_split(safety.get("crisis_resources", ""), languages).items():
            initial[lang_field("crisis", lang)] = text
        return initial
    if section == "limits":
        limits = doc.get("limits", {})
        return {name: limits.get(name) for name in LIMIT_FIELDS}
    if section == "analysis":
        analysis = doc.get("analysis", {})
        return {
            "window_days": analysis.get("window_days"),
            "session_gap_minutes": analysis.get("session_gap_minutes"),
            "outcomes": ", ".join(analysis.get("outcomes", [])),
            "predictors": ", ".join(analysis.get("predictors", [])),
            "covariates": ", ".join(analysis.get("covariates", [])),
            "random_effects": analysis.get("random_effects", ""),
            "arm_by_time": analysis.get("arm_by_time", False),
        }
    raise KeyError(section)


def _yaml_list(items: list) -> str:
    if not items:
        return ""
    return yaml.safe_dump(items, sort_keys=False, allow_unicode=True, width=100)


def _entry_initial(entry: Mapping) -> dict:
    rule = entry.get("rule", {})
    reminders = entry.get("reminders", {})
    days = rule.get("days")
    between = rule.get("between")
    return {
        "key": entry.get("key", ""),
        "instruments": ", ".join(entry.get("instruments", [])),
        "rule_type": rule.get("type", "recurring"),
        "every_days": rule.get("every_days"),
        "at": rule.get("at", ""),
        "start_day": rule.get("start_day"),
        "end_day": rule.get("end_day"),
        "delay_minutes": rule.get("delay_minutes"),
        "days": ", ".join(days) if isinstance(days, list) else (days or ""),
        "dates": ", ".join(rule.get("dates", [])),
        "per_day": rule.get("per_day"),
        "between": "-".join(between) if between else "",
        "min_gap_minutes": rule.get("min_gap_minutes"),
        "gap_minutes": rule.get("gap_minutes"),
        "max_per_day": rule.get("max_per_day"),
        "count": rule.get("count"),
        "repeat": rule.get("repeat", False),
        "window_hours": entry.get("window_hours"),
        "reminder_offsets": ", ".join(str(_number(o)) for o in reminders.get("offsets_hours", [])),
        "reminder_max": reminders.get("max"),
        "conditions": list(entry.get("conditions", [])),
    }


# --- sections: merging cleaned data back -------------------------------------------------------


def apply_section(doc: Mapping, section: str, data: Any) -> dict:
    """A copy of `doc` with `section` replaced by the cleaned form data (validate it after).

    Fields the forms do not show (arm `parameters.top_p`, schedule `notify`, ...) are kept from
    the current document, matched by key, so a form never silently drops part of a protocol.
    """
    new = copy.deepcopy(dict(doc))
    languages = platform_languages()
    if section == "study":
        meta = new.setdefault("study", {})
        meta["title"] = data["title"]
        meta["timezone"] = data["timezone"]
        meta["languages"] = list(data["languages"])
        meta["duration_days"] = data["duration_days"]
        _set_or_drop(meta, "target_enrollment", data.get("target_enrollment"))
        _set_or_drop(
            meta,
            "description",
            text_join({lang: data.get(lang_field("description", lang), "") for lang in languages}),
        )
        recruitment = dict(meta.get("recruitment", {}))
        recruitment["panel"] = data["panel"]
        recruitment["collect_email"] = bool(data.get("collect_email"))
        _set_or_drop(recruitment, "completion_url", data.get("completion_url"))
        meta["recruitment"] = recruitment
    elif section == "arms":
        old = {a.get("key"): a for a in doc.get("arms", [])}
        arms = []
        for row in data:
            arm = copy.deepcopy(old.get(row["key"], {}))
            arm["key"] = row["key"]
            _set_or_drop(
                arm,
                "label",
                text_join({lang: row.get(lang_field("label", lang), "") for lang in languages}),
            )
            arm["weight"] = row.get("weight") or 1
            model = dict(arm.get("model", {}))
            for key, field in ARM_MODEL_FIELDS.items():
                _set_or_drop(model, key, row.get(field))
            arm["model"] = model
            _set_or_drop(arm, "system_prompt", row.get("system_prompt"))
            params = dict(arm.get("parameters", {}))
            for p in ARM_PARAMETER_FIELDS:
                _set_or_drop(params, p, _number(row.get(p)) if row.get(p) is not None else None)
            _set_or_drop(arm, "parameters", params or None)
            arms.append(arm)
        new["arms"] = arms
    elif section == "allocation":
        allocation = dict(new.get("allocation", {}))
        allocation["method"] = data["method"]
        _set_or_drop(allocation, "block_sizes", list(data.get("block_sizes") or []))
        _set_or_drop(allocation, "strata", list(data.get("strata") or []))
        # Written when ticked or already present, so saving an untouched form changes nothing.
        disclose = bool(data.get("disclose_to_participant"))
        if disclose or "disclose_to_participant" in allocation:
            allocation["disclose_to_participant"] = disclose
        # Nor is an absent section written out when the form only repeats the implied default.
        if "allocation" in doc or allocation != {"method": default_allocation_method(doc)}:
            new["allocation"] = allocation
    elif section == "consent":
        consent = new.setdefault("consent", {})
        consent["signature"] = data["signature"]
        documents = []
        for lang in languages:
            title = data.get(lang_field("title", lang), "")
            body = data.get(lang_field("body", lang), "")
            if not (title or body):
                continue  # a language without a document; the validator says if one is needed
            documents.append(
                {
                    "language": lang,
                    "version": data.get(lang_field("version", lang)) or 1,
                    "title": title,
                    "body": body,
                    "checkboxes": data.get(lang_field("checkboxes", lang)) or [],
                }
            )
        consent["documents"] = documents
    elif section == "screener":
        screener = {}
        _set_or_drop(screener, "questions", data.get("questions"))
        _set_or_drop(screener, "eligibility", data.get("eligibility"))
        if screener:
            new["screener"] = screener
        else:
            new.pop("screener", None)
    elif section == "schedule":
        old = {e.get("key"): e for e in doc.get("surveys", {}).get("schedule", [])}
        surveys = new.setdefault("surveys", {})
        surveys["schedule"] = [_entry_from_row(row, old.get(row["key"], {})) for row in data]
    elif section == "safety":
        safety = new.setdefault("safety", {})
        safety["response_time_hours"] = _number(data["response_time_hours"])
        _set_or_drop(safety, "alert_recipients", csv_list(data.get("alert_recipients", "")))
        safety["crisis_resources"] = (
            text_join({lang: data.get(lang_field("crisis", lang), "") for lang in languages}) or ""
        )
        safety["detector"] = {
            "lexicon": bool(data.get("lexicon")),
            "moderation": bool(data.get("moderation")),
        }
        _set_or_drop(safety, "flag_items", data.get("flag_items"))
    elif section == "limits":
        limits = dict(new.get("limits", {}))
        for key in LIMIT_FIELDS:
            _set_or_drop(limits, key, data.get(key))
        if limits:
            new["limits"] = limits
        else:
            new.pop("limits", None)  # the platform defaults apply
    elif section == "analysis":
        analysis = dict(new.get("analysis", {}))
        for key in ("window_days", "session_gap_minutes", "random_effects"):
            _set_or_drop(analysis, key, data.get(key))
        for key in ("outcomes", "predictors", "covariates"):
            values = csv_list(data.get(key, ""))
            # Empty lists are meaningful for covariates in the shipped examples; keep the key.
            if values or key in analysis:
                analysis[key] = values
        analysis["arm_by_time"] = bool(data.get("arm_by_time"))
        new["analysis"] = analysis
    else:
        raise KeyError(section)
    return new


def _entry_from_row(row: Mapping, old: Mapping) -> dict:
    entry = copy.deepcopy(dict(old))
    entry["key"] = row["key"]
    entry["instruments"] = csv_list(row.get("instruments", ""))
    kind = row["rule_type"]
    rule: dict[str, Any] = {"type": kind}
    for name in RULE_FIELDS[kind]:
        value = row.get(name)
        if name == "days" and kind in ("weekdays", "random_ema"):
            value = csv_list(value or "")
        elif name == "days":
            value = int(value) if str(value or "").strip().isdigit() else (value or None)
        elif name == "dates":
            value = csv_list(value or "")
        elif name == "between":
            value = [t.strip() for t in (value or "").split("-") if t.strip()] or None
        elif name == "repeat":
            value = bool(value) if kind == "after_messages" else None
        _set_or_drop(rule, name, value)
    entry["rule"] = rule
    _set_or_drop(
        entry, "window_hours", _number(row["window_hours"]) if row.get("window_hours") else None
    )
    reminders: dict[str, Any] = {}
    offsets = [_number(o) for o in csv_list(row.get("reminder_offsets", ""))]
    _set_or_drop(reminders, "offsets_hours", offsets)
    _set_or_drop(reminders, "max", row.get("reminder_max"))
    _set_or_drop(entry, "reminders", reminders or None)
    _set_or_drop(entry, "conditions", list(row.get("conditions") or []))
    return entry


# --- placing validation errors ------------------------------------------------------------------

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


# --- calendar preview ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarRow:
    entry: str
    wave: int | None
    opens: datetime  # local
    closes: datetime  # local
    instruments: tuple[str, ...]
    study_day: int


def calendar_rows(
    doc: Mapping, *, enrolled_on: date, tz: str
) -> tuple[list[CalendarRow], list[str]]:
    """Every time-based occurrence for a participant enrolled at noon local on `enrolled_on`.

    Returns (rows sorted by opening time, keys of event-triggered entries that have no fixed
    dates). The seed is fixed so random EMA prompts are the same on every reload.
    """
    zone = ZoneInfo(tz)
    enrolled_at = datetime.combine(enrolled_on, time(12, 0), tzinfo=zone)
    ctx = ParticipantContext.for_study(
        enrolled_at=enrolled_at,
        timezone=tz,
        duration_days=int(doc.get("study", {}).get("duration_days", 1)),
        seed="preview",
    )
    rows: list[CalendarRow] = []
    event_entries: list[str] = []
    for entry in doc.get("surveys", {}).get("schedule", []):
        if entry.get("rule", {}).get("type") in EVENT_RULES:
            event_entries.append(entry["key"])
            continue
        try:
            occurrences = all_occurrences(entry, ctx)
        except ScheduleError:
            continue  # the validator reports the entry itself
        for occ in occurrences:
            opens = occ.opens_at.astimezone(zone)
            rows.append(
                CalendarRow(
                    entry=entry["key"],
                    wave=occ.wave,
                    opens=opens,
                    closes=occ.closes_at.astimezone(zone),
                    instruments=tuple(entry.get("instruments", [])),
                    study_day=(opens.date() - enrolled_on).days,
                )
            )
    rows.sort(key=lambda r: (r.opens, r.entry))
    return rows, event_entries
