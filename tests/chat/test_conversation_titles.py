"""Conversation titles never repeat what the participant typed (issue 18): the first message
often holds an email address, a phone number or a name, and the list shows titles in clear."""

from __future__ import annotations

import pytest
from django.template.defaultfilters import date as date_filter
from django.utils import translation

from studyplatform.chat.services import conversation_create, message_send
from studyplatform.participants.session import SESSION_KEY

pytestmark = pytest.mark.django_db

FIRST = "My email is bia.souza@example.org and my phone is +55 11 98765-4321, remember it"


def test_a_new_conversation_gets_a_neutral_dated_title_not_the_first_message(
    client, chat_study, enroll
):
    # given: a participant whose first message holds their email address and phone number
    participant = enroll(chat_study, language="pt-br")
    conversation = conversation_create(participant=participant)
    message_send(participant=participant, conversation=conversation, text=FIRST)

    # when: they open their list of conversations
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()
    html = client.get("/p/chat/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()

    # then: nothing they typed is stored or shown as the title; a dated Portuguese one is
    conversation.refresh_from_db()
    assert conversation.title == ""
    assert "example.org" not in html and "98765" not in html and "My email" not in html
    with translation.override("pt-br"):
        assert f"Conversa, {date_filter(conversation.created_at, 'j M')}" in html


def test_an_imported_conversation_keeps_the_title_it_came_with(client, chat_study, enroll):
    participant = enroll(chat_study)
    conversation = conversation_create(participant=participant)
    conversation.imported = True
    conversation.title = "Capital cities"
    conversation.save()
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()
    assert "Capital cities" in client.get("/p/chat/").content.decode()
