"""Names and small value conversions the designer's forms and section mapping share.

Which form field edits which protocol field (per-language field names, the arm model and limit
fields, the schedule rule fields), plus the conversions between form values and protocol values
(comma lists, per-language text, plain JSON numbers). Pure data, no Django.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from studyplatform.studies.protocol.validate import schema

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


def set_or_drop(target: dict, key: str, value: Any) -> None:
    """Optional protocol fields are omitted rather than written as empty values."""
    if value is None or value == "" or value == []:
        target.pop(key, None)
    else:
        target[key] = value


def json_number(value: Any) -> Any:
    """Decimal/float form values as the plainest JSON number (7.0 -> 7)."""
    if value is None:
        return None
    number = float(value)
    return int(number) if number.is_integer() else number
