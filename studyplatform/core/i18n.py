"""Per-language text: one rule for every "text in this language" lookup. Pure Python (no Django).

Protocols write language keys the way Django names its languages (``pt-br``), shipped survey
instruments write BCP 47 tags (``pt-BR``), browsers and gettext catalogues send ``pt_BR`` or a
regional variant (``en-GB``). Every lookup goes through ``normalize_language`` so these all
find the same text, and through ``localized`` so the fallback (English, then whatever exists)
is the same on every page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The platform's languages, as settings.LANGUAGES names them (tests/core/test_i18n.py checks
# the two agree). English is the fallback every protocol must provide.
PLATFORM_LANGUAGES: tuple[str, ...] = ("en", "pt-br")
FALLBACK_LANGUAGE = "en"


def normalize_language(code: str | None) -> str:
    """The platform's name for a language code: lower case, ``-`` as separator, and a platform
    language for any regional variant of it (``pt-BR``, ``pt_BR``, ``pt`` -> ``pt-br``;
    ``en-GB`` -> ``en``). Other codes come back cleaned (``fr_CA`` -> ``fr-ca``); empty -> ``""``.
    """
    cleaned = (code or "").strip().lower().replace("_", "-")
    if not cleaned or cleaned in PLATFORM_LANGUAGES:
        return cleaned
    base = cleaned.split("-", 1)[0]
    for language in PLATFORM_LANGUAGES:
        if language.split("-", 1)[0] == base:
            return language
    return cleaned


def text_for(texts: Any, language: str | None) -> Any:
    """The non-empty value ``texts`` holds for ``language`` (keys compared after
    ``normalize_language``), or None. No fallback: for callers that chain their own."""
    if not isinstance(texts, Mapping):
        return None
    wanted = normalize_language(language)
    for key, value in texts.items():
        if isinstance(key, str) and normalize_language(key) == wanted and value not in (None, ""):
            return value
    return None


def localized(texts: Any, language: str | None, default: Any = "") -> Any:
    """``texts`` in ``language``: a per-language mapping ({"en": ..., "pt-br": ...}) gives the
    requested language's value, else English's, else the first non-empty value; a plain value
    (a protocol that is monolingual) is returned as it is; nothing gives ``default``."""
    if isinstance(texts, Mapping):
        for wanted in (language, FALLBACK_LANGUAGE):
            found = text_for(texts, wanted)
            if found is not None:
                return found
        return next((v for v in texts.values() if v not in (None, "")), default)
    return texts if texts not in (None, "") else default
