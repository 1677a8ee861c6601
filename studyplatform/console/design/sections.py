"""Protocol document <-> section form data: `section_initial` builds a section's form (or
formset) data from the document; `apply_section` merges cleaned form data back into a copy.

Plain data in, plain data out: no database, no request. The merged document is then validated
by the protocol validator exactly as an uploaded YAML file would be.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from studyplatform.studies.protocol.document import study_languages, text_split

from .fields import (
    ARM_MODEL_FIELDS,
    ARM_PARAMETER_FIELDS,
    LIMIT_FIELDS,
    RULE_FIELDS,
    csv_list,
    default_allocation_method,
    json_number,
    lang_field,
    platform_languages,
    set_or_drop,
    text_join,
)
from .text_lines import checkboxes_to_lines, flags_to_lines


def section_initial(doc: Mapping, section: str) -> Any:
    """Initial data for a section's form (a dict) or formset (a list of dicts)."""
    languages = platform_languages()
    if section == "study":
        meta = doc.get("study", {})
        recruitment = meta.get("recruitment", {})
        initial = {
            # One field edits the title in the study's first language; a per-language title's
            # other translations are kept as they are (edited in the YAML).
            "title": text_split(meta.get("title", ""), study_languages(doc))[
                study_languages(doc)[0]
            ],
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
            "arm_contrast_method": analysis.get("arm_contrast", {}).get("method", ""),
            "multiplicity_correction": analysis.get("multiplicity", {}).get("correction", ""),
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
        "reminder_offsets": ", ".join(
            str(json_number(o)) for o in reminders.get("offsets_hours", [])
        ),
        "reminder_max": reminders.get("max"),
        "conditions": list(entry.get("conditions", [])),
    }


def apply_section(doc: Mapping, section: str, data: Any) -> dict:
    """A copy of `doc` with `section` replaced by the cleaned form data (validate it after).

    Fields the forms do not show (arm `parameters.top_p`, schedule `notify`, ...) are kept from
    the current document, matched by key, so a form never silently drops part of a protocol.
    """
    new = copy.deepcopy(dict(doc))
    languages = platform_languages()
    if section == "study":
        meta = new.setdefault("study", {})
        if isinstance(meta.get("title"), dict):
            meta["title"] = {**meta["title"], study_languages(doc)[0]: data["title"]}
        else:
            meta["title"] = data["title"]
        meta["timezone"] = data["timezone"]
        meta["languages"] = list(data["languages"])
        meta["duration_days"] = data["duration_days"]
        set_or_drop(meta, "target_enrollment", data.get("target_enrollment"))
        set_or_drop(
            meta,
            "description",
            text_join({lang: data.get(lang_field("description", lang), "") for lang in languages}),
        )
        recruitment = dict(meta.get("recruitment", {}))
        recruitment["panel"] = data["panel"]
        recruitment["collect_email"] = bool(data.get("collect_email"))
        set_or_drop(recruitment, "completion_url", data.get("completion_url"))
        meta["recruitment"] = recruitment
    elif section == "arms":
        old = {a.get("key"): a for a in doc.get("arms", [])}
        arms = []
        for row in data:
            arm = copy.deepcopy(old.get(row["key"], {}))
            arm["key"] = row["key"]
            set_or_drop(
                arm,
                "label",
                text_join({lang: row.get(lang_field("label", lang), "") for lang in languages}),
            )
            arm["weight"] = row.get("weight") or 1
            model = dict(arm.get("model", {}))
            for key, field in ARM_MODEL_FIELDS.items():
                set_or_drop(model, key, row.get(field))
            arm["model"] = model
            set_or_drop(arm, "system_prompt", row.get("system_prompt"))
            params = dict(arm.get("parameters", {}))
            for p in ARM_PARAMETER_FIELDS:
                set_or_drop(params, p, json_number(row.get(p)) if row.get(p) is not None else None)
            set_or_drop(arm, "parameters", params or None)
            arms.append(arm)
        new["arms"] = arms
    elif section == "allocation":
        allocation = dict(new.get("allocation", {}))
        allocation["method"] = data["method"]
        set_or_drop(allocation, "block_sizes", list(data.get("block_sizes") or []))
        set_or_drop(allocation, "strata", list(data.get("strata") or []))
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
        stored_bodies = {
            d.get("language"): d.get("body", "")
            for d in doc.get("consent", {}).get("documents", [])
            if isinstance(d, Mapping)
        }
        documents = []
        for lang in languages:
            title = data.get(lang_field("title", lang), "")
            body = _unchanged_text(data.get(lang_field("body", lang), ""), stored_bodies.get(lang))
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
        set_or_drop(screener, "questions", data.get("questions"))
        set_or_drop(screener, "eligibility", data.get("eligibility"))
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
        safety["response_time_hours"] = json_number(data["response_time_hours"])
        set_or_drop(safety, "alert_recipients", csv_list(data.get("alert_recipients", "")))
        safety["crisis_resources"] = (
            text_join({lang: data.get(lang_field("crisis", lang), "") for lang in languages}) or ""
        )
        safety["detector"] = {
            "lexicon": bool(data.get("lexicon")),
            "moderation": bool(data.get("moderation")),
        }
        set_or_drop(safety, "flag_items", data.get("flag_items"))
    elif section == "limits":
        limits = dict(new.get("limits", {}))
        for key in LIMIT_FIELDS:
            set_or_drop(limits, key, data.get(key))
        if limits:
            new["limits"] = limits
        else:
            new.pop("limits", None)  # the platform defaults apply
    elif section == "analysis":
        analysis = dict(new.get("analysis", {}))
        for key in ("window_days", "session_gap_minutes", "random_effects"):
            set_or_drop(analysis, key, data.get(key))
        for key in ("outcomes", "predictors", "covariates"):
            values = csv_list(data.get(key, ""))
            # Empty lists are meaningful for covariates in the shipped examples; keep the key.
            if values or key in analysis:
                analysis[key] = values
        analysis["arm_by_time"] = bool(data.get("arm_by_time"))
        # The form edits one key of each nested section; the others (reference arm, family
        # terms, ...) are kept, and an emptied section is dropped.
        for section_key, key, field in (
            ("arm_contrast", "method", "arm_contrast_method"),
            ("multiplicity", "correction", "multiplicity_correction"),
        ):
            nested = dict(analysis.get(section_key, {}))
            set_or_drop(nested, key, data.get(field) or None)
            if nested:
                analysis[section_key] = nested
            else:
                analysis.pop(section_key, None)
        new["analysis"] = analysis
    else:
        raise KeyError(section)
    return new


def _unchanged_text(submitted: str, stored: str | None) -> str:
    """The stored text when the form's copy differs from it only in what a form round trip
    changes (the field strips surrounding white space; browsers send line breaks as CRLF), so
    saving an untouched section never reads as "the consent text changed"."""
    if stored is not None and _round_trip(submitted) == _round_trip(stored):
        return stored
    return submitted


def _round_trip(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


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
        set_or_drop(rule, name, value)
    entry["rule"] = rule
    set_or_drop(
        entry, "window_hours", json_number(row["window_hours"]) if row.get("window_hours") else None
    )
    reminders: dict[str, Any] = {}
    offsets = [json_number(o) for o in csv_list(row.get("reminder_offsets", ""))]
    set_or_drop(reminders, "offsets_hours", offsets)
    set_or_drop(reminders, "max", row.get("reminder_max"))
    set_or_drop(entry, "reminders", reminders or None)
    set_or_drop(entry, "conditions", list(row.get("conditions") or []))
    return entry
