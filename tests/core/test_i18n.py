"""Per-language text: every spelling of a language finds the same text, with one fallback."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.template import Context, Template
from django.utils import translation

from studyplatform.core.i18n import PLATFORM_LANGUAGES, localized, normalize_language, text_for
from surveys.forms import shown_instrument
from surveys.instruments import get_instrument

TEXT = {"en": "Hello", "pt-br": "Olá"}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("pt-br", "pt-br"),
        ("pt-BR", "pt-br"),
        ("pt_BR", "pt-br"),
        ("PT", "pt-br"),
        ("en", "en"),
        ("en-GB", "en"),
        ("en_US", "en"),
        ("fr_CA", "fr-ca"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_language_gives_the_platform_name(code, expected):
    assert normalize_language(code) == expected


@pytest.mark.parametrize("language", ["pt-br", "pt-BR", "pt_BR", "pt"])
def test_every_spelling_of_brazilian_portuguese_finds_the_portuguese_text(language):
    assert localized(TEXT, language) == "Olá"
    # and the mapping's own keys may be spelled either way (instrument files write pt-BR)
    assert localized({"en": "Hello", "pt-BR": "Olá"}, language) == "Olá"


def test_a_regional_english_finds_the_english_text():
    assert localized(TEXT, "en-GB") == "Hello"


def test_a_missing_language_falls_back_to_english_then_to_any_text():
    assert localized(TEXT, "de") == "Hello"
    assert localized(TEXT, None) == "Hello"
    assert localized({"pt-br": "Olá"}, "en") == "Olá"
    assert localized({"en": "", "pt-br": "Olá"}, "de") == "Olá"


def test_plain_and_empty_texts():
    assert localized("Only one language", "pt-br") == "Only one language"
    assert localized(None, "en") == "" and localized({}, "en") == ""
    assert localized({}, "en", default=None) is None


def test_text_for_has_no_fallback():
    assert text_for(TEXT, "pt_BR") == "Olá"
    assert text_for(TEXT, "de") is None
    assert text_for("not a mapping", "en") is None


def test_the_platform_languages_are_the_settings_languages():
    assert tuple(code for code, _ in settings.LANGUAGES) == PLATFORM_LANGUAGES


def test_the_template_filter_follows_the_active_language():
    template = Template("{% load platform %}{{ text|localized }}")
    with translation.override("pt-br"):
        assert template.render(Context({"text": TEXT})) == "Olá"
    with translation.override("en"):
        assert template.render(Context({"text": TEXT})) == "Hello"


def test_a_shipped_instrument_written_in_pt_BR_shows_in_portuguese_for_a_pt_br_participant():
    # given: WHO-5, whose file keys its Portuguese text "pt-BR"
    instrument = get_instrument("who5")
    # when: a participant whose language is Django's "pt-br" sees it
    shown = shown_instrument(instrument, language="pt-br", protocol={})
    # then: the Portuguese title, not the English fallback
    assert shown.title == localized(instrument.title, "pt-BR") != localized(instrument.title, "en")
