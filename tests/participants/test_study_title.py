"""A per-language study title: participants read the title in their own language."""

from __future__ import annotations

import pytest

from studyplatform.participants.session import SESSION_KEY
from studyplatform.studies.services import study_create_from_protocol
from tests.factories import launch_study

pytestmark = pytest.mark.django_db

TITLE = {
    "en": "Everyday conversations with an AI assistant",
    "pt-br": "Conversas do dia a dia com um assistente de IA",
}


@pytest.fixture
def translated_study(rct_doc, owner):
    rct_doc["study"]["title"] = dict(TITLE)
    return launch_study(study_create_from_protocol(doc=rct_doc, author=owner), owner)


def login(client, participant):
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def test_a_portuguese_speaking_participant_sees_the_portuguese_title(
    client, translated_study, enroll
):
    # given: one participant taking part in pt-br, in a pt-BR browser (participant pages, like
    # every protocol text on them, follow the active language)
    participant = enroll(translated_study, language="pt-br")
    login(client, participant)
    # when
    page = client.get("/p/", follow=True, HTTP_ACCEPT_LANGUAGE="pt-BR")
    # then: the page heading and the browser title are the pt-br title
    html = page.content.decode()
    assert f"<h1>{TITLE['pt-br']}</h1>" in html
    assert TITLE["en"] not in html


def test_an_english_speaking_participant_sees_the_english_title(client, translated_study, enroll):
    participant = enroll(translated_study, language="en")
    login(client, participant)
    html = client.get("/p/", follow=True, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"<h1>{TITLE['en']}</h1>" in html
    assert TITLE["pt-br"] not in html


def test_the_public_study_page_follows_the_browser_language(client, translated_study):
    page = client.get(f"/s/{translated_study.slug}/", HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert f"<h1>{TITLE['pt-br']}</h1>" in page.content.decode()


def test_researchers_see_the_english_title(translated_study):
    # the stored title (console, exports) is the English one
    assert translated_study.title == TITLE["en"]
    assert translated_study.title_in("pt-br") == TITLE["pt-br"]


def test_emails_to_a_participant_use_their_language(translated_study, enroll, mailoutbox):
    from studyplatform.participants.services.enrollment import _email_joined

    participant = enroll(translated_study, language="pt-br")
    _email_joined(participant=participant, email="p@example.org")
    [message] = mailoutbox
    assert TITLE["pt-br"] in message.subject and TITLE["pt-br"] in message.body


def test_a_plain_string_title_is_still_accepted(client, recruiting_study):
    page = client.get(f"/s/{recruiting_study.slug}/", HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert f"<h1>{recruiting_study.title}</h1>" in page.content.decode()
