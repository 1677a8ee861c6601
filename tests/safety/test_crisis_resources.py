"""One helper picks and renders the crisis resources for chat and survey pages alike."""

from __future__ import annotations

from studyplatform.safety.services import crisis_resources_html, crisis_resources_text

PROTOCOL = {
    "safety": {
        "crisis_resources": {
            "en": "Call **988** or see https://findahelpline.com",
            "pt-br": "Ligue para o CVV no **188**",
        }
    }
}


def test_the_participants_language_is_matched_whatever_its_spelling():
    # Sessions say pt-br, Django's language codes pt-BR: both get the Portuguese text.
    assert crisis_resources_text(PROTOCOL, "pt-br") == "Ligue para o CVV no **188**"
    assert crisis_resources_text(PROTOCOL, "pt-BR") == "Ligue para o CVV no **188**"


def test_an_unknown_or_missing_language_falls_back_to_english():
    assert crisis_resources_text(PROTOCOL, "de") == PROTOCOL["safety"]["crisis_resources"]["en"]
    assert crisis_resources_text(PROTOCOL, None) == PROTOCOL["safety"]["crisis_resources"]["en"]


def test_without_english_any_given_language_is_better_than_nothing():
    protocol = {"safety": {"crisis_resources": {"pt-br": "Ligue 188"}}}
    assert crisis_resources_text(protocol, "en") == "Ligue 188"


def test_a_single_text_serves_every_language_and_no_text_renders_nothing():
    assert crisis_resources_text({"safety": {"crisis_resources": "Call 112"}}, "pt-br") == (
        "Call 112"
    )
    assert crisis_resources_html({}, "en") == ""


def test_the_text_is_rendered_as_sanitised_markdown():
    protocol = {"safety": {"crisis_resources": {"en": "Call **988** <script>x()</script>"}}}
    html = crisis_resources_html(protocol, "en")
    assert "<strong>988</strong>" in html
    assert "<script>" not in html
