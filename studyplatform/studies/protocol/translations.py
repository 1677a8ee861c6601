"""Every participant-facing protocol text given per language must give every study language.

A text may be one string (shown in every language) or a mapping from language to string
(`study.title: {en: ..., pt-br: ...}`). A mapping that leaves out a study language would show
participants of that language another language's text without anyone noticing, so it is an
error naming the place and the missing languages. Arm labels, screener questions and crisis
resources are checked where their sections are (validate.py); factor labels in factors.py;
this module checks the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .yaml_lines import PathParts


def _texts(doc: dict) -> Iterator[tuple[PathParts, Any]]:
    """(place, value) of the per-language texts this module checks."""
    study = doc.get("study") or {}
    yield ("study", "title"), study.get("title")
    yield ("study", "description"), study.get("description")
    screener = doc.get("screener") or {}
    for i, question in enumerate(screener.get("questions") or []):
        for j, option in enumerate(question.get("options") or []):
            if isinstance(option, dict):
                yield ("screener", "questions", i, "options", j, "label"), option.get("label")
    for i, rule in enumerate(screener.get("eligibility") or []):
        yield ("screener", "eligibility", i, "message"), rule.get("message")
    for i, entry in enumerate((doc.get("surveys") or {}).get("schedule") or []):
        yield ("surveys", "schedule", i, "label"), entry.get("label")


def translation_errors(doc: dict, languages: list[str]) -> list:
    from .validate import ProtocolError

    errors = []
    for parts, value in _texts(doc):
        if isinstance(value, dict):
            missing = [lang for lang in languages if not value.get(lang)]
            if missing:
                errors.append(ProtocolError(parts, "missing text for: " + ", ".join(missing)))
    return errors
