"""Translations of participant-facing protocol texts that are not checked elsewhere.

Texts that may be one string or a mapping from language to string (`study.title`, like
`study.description`): a mapping must give every study language, or participants of a missing
language would silently read another language's text.
"""

from __future__ import annotations

from typing import Any

from .yaml_lines import PathParts

# The per-language texts checked here.
TRANSLATABLE: tuple[PathParts, ...] = (("study", "title"),)


def _at(doc: Any, parts: PathParts) -> Any:
    for part in parts:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def translation_errors(doc: dict, languages: list[str]) -> list:
    from .validate import ProtocolError

    errors = []
    for parts in TRANSLATABLE:
        value = _at(doc, parts)
        if isinstance(value, dict):
            missing = [lang for lang in languages if not value.get(lang)]
            if missing:
                errors.append(ProtocolError(parts, "missing text for: " + ", ".join(missing)))
            extra = [lang for lang in value if lang not in languages]
            if extra:
                errors.append(
                    ProtocolError(
                        (*parts, extra[0]),
                        f"{extra[0]!r} is not one of the study's languages "
                        f"({', '.join(languages)})",
                    )
                )
    return errors
