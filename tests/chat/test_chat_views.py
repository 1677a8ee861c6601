"""Participant chat endpoints: pages, send, stream, stop, regenerate, crisis resources, and
every endpoint refusing another participant's objects."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

from studyplatform.chat import services
from studyplatform.chat.models import Message
from studyplatform.participants.session import SESSION_KEY
from studyplatform.safety.models import SafetyAlert
from tests.chat.conftest import parse_sse
from tests.factories import launch_study

pytestmark = pytest.mark.django_db


def login(client, participant):
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def consume(response) -> list:
    """Read the async SSE body; async_to_sync keeps database work on this test's thread."""

    async def read():
        return [
            chunk.decode() if isinstance(chunk, bytes) else chunk
            async for chunk in response.streaming_content
        ]

    return parse_sse(async_to_sync(read)())


@pytest.fixture
def me(chat_study, enroll, client):
    participant = enroll(chat_study)
    login(client, participant)
    return participant


def post_json(client, url, payload=None):
    return client.post(url, json.dumps(payload or {}), content_type="application/json")


def test_send_then_stream_a_reply_through_the_endpoints(client, me, upstream):
    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    response = post_json(
        client,
        f"/p/chat/c/{conversation.pk}/send/",
        {"text": "[[reply: Olá!]] oi", "client_request_id": "r1", "tz_offset": -180},
    )
    assert response.status_code == 201
    stream_url = response.json()["stream"]
    events = consume(client.get(stream_url))
    assert events[-1][0] == "done" and events[-1][1]["html"] == "<p>Olá!</p>"
    # the same token cannot start a second upstream call
    assert client.get(stream_url).status_code == 404
    assert len(upstream.requests) == 1
    page = client.get(f"/p/chat/c/{conversation.pk}/")
    assert "Olá!".encode() in page.content


def test_a_retried_send_with_the_same_request_id_makes_no_second_stream(client, me):
    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    url = f"/p/chat/c/{conversation.pk}/send/"
    first = post_json(client, url, {"text": "hello", "client_request_id": "same"})
    second = post_json(client, url, {"text": "hello", "client_request_id": "same"})
    assert first.status_code == 201 and second.status_code == 200
    assert "stream" not in second.json()
    assert Message.objects.filter(role="user").count() == 1


def test_model_output_is_sanitized_before_it_reaches_the_page(client, me, upstream):
    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    evil = "<script>alert(1)</script> **bold** <img src=x onerror=alert(2)>"
    upstream.script(count=1, reply=evil)
    sent = post_json(client, f"/p/chat/c/{conversation.pk}/send/", {"text": "hi"})
    done = consume(client.get(sent.json()["stream"]))[-1][1]
    assert "<script" not in done["html"] and "onerror" not in done["html"]
    assert "<strong>bold</strong>" in done["html"]
    page = client.get(f"/p/chat/c/{conversation.pk}/").content.decode()
    assert "<script>alert(1)" not in page and "onerror=alert" not in page


def test_a_crisis_message_shows_resources_and_raises_an_alert(
    client, me, mailoutbox, django_capture_on_commit_callbacks
):
    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/p/chat/c/{conversation.pk}/send/",
            json.dumps({"text": "não aguento mais, quero me matar"}),
            content_type="application/json",
            HTTP_ACCEPT_LANGUAGE="pt-BR",
        )
    body = response.json()
    assert body["crisis"]["severity"] == "high"
    assert "CVV" in body["crisis"]["html"]
    alert = SafetyAlert.objects.get()
    assert alert.participant == me and alert.source == "chat" and alert.severity == "high"
    assert "quero me matar" in alert.excerpt
    assert alert.message.content == "não aguento mais, quero me matar"
    [email] = mailoutbox
    assert email.to == ["safety-team@example.org"] and "quero me matar" not in email.body


def test_stop_regenerate_and_branch_switching(client, me, upstream):
    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    sent = post_json(client, f"/p/chat/c/{conversation.pk}/send/", {"text": "[[reply: A]] q"})
    user_id = sent.json()["message"]["id"]
    consume(client.get(sent.json()["stream"]))
    first = Message.objects.get(role="assistant")
    regen = post_json(client, f"/p/chat/m/{first.pk}/regenerate/")
    upstream.script(count=1, reply="B")
    consume(client.get(regen.json()["stream"]))
    second = Message.objects.filter(role="assistant").exclude(pk=first.pk).get()
    assert second.parent_id == user_id and second.content == "B"
    page = client.get(f"/p/chat/c/{conversation.pk}/").content.decode()
    assert "version 2 of 2" in page
    client.post(f"/p/chat/m/{first.pk}/activate/")
    conversation.refresh_from_db()
    assert conversation.active_leaf_id == first.pk
    assert post_json(client, f"/p/chat/stream/{user_id}/stop/").json() == {"stopping": True}


def test_chat_endpoints_refuse_another_participants_objects(
    client, chat_study, enroll, me, upstream
):
    other = enroll(chat_study)
    theirs = services.conversation_create(participant=other)
    their_msg = services.message_send(participant=other, conversation=theirs, text="secret").message
    assert client.get(f"/p/chat/c/{theirs.pk}/").status_code == 404
    assert post_json(client, f"/p/chat/c/{theirs.pk}/send/", {"text": "x"}).status_code == 404
    assert client.get(f"/p/chat/stream/{their_msg.pk}/?t=x").status_code == 404
    # a token issued for my message does not open theirs
    mine = services.message_send(
        participant=me, conversation=services.conversation_create(participant=me), text="mine"
    ).message
    from studyplatform.chat.views import _stream_url

    token_url = _stream_url(mine)
    assert client.get(token_url.replace(f"/{mine.pk}/", f"/{their_msg.pk}/")).status_code == 404
    assert post_json(client, f"/p/chat/stream/{their_msg.pk}/stop/").status_code == 404
    assert post_json(client, f"/p/chat/m/{their_msg.pk}/regenerate/").status_code == 404
    assert client.post(f"/p/chat/m/{their_msg.pk}/activate/").status_code == 404
    assert Message.objects.filter(conversation=theirs).count() == 1
    assert upstream.requests == []


def test_chat_needs_a_consented_participant_session(client, chat_study, owner):
    client.force_login(owner)  # a researcher is not a participant
    assert client.get("/p/chat/").status_code == 302


def test_pilot_mode_is_labelled_for_the_simulated_provider(client, study, owner, enroll):

    study = launch_study(study, owner)
    arm_keys = list(study.arms.values_list("key", flat=True))
    study.arms.update(provider="simulated")
    participant = enroll(study)
    login(client, participant)
    page = client.get("/p/chat/")
    assert b"Pilot mode" in page.content and len(arm_keys) == 2


def test_the_memory_notes_page_saves_notes(client, me):
    client.post("/p/chat/memory/", {"text": "I am a nurse working nights."})
    assert services.memory_text(me) == "I am a nurse working nights."


def test_withdrawal_with_deletion_removes_chat_memory_and_alert_text(
    client, me, django_capture_on_commit_callbacks
):
    from studyplatform.chat.models import MemoryNote
    from studyplatform.participants.services import participant_withdraw

    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    services.memory_save(participant=me, text="I live alone.")
    with django_capture_on_commit_callbacks(execute=True):
        services.message_send(
            participant=me, conversation=conversation, text="I want to kill myself"
        )
    participant_withdraw(participant=me, mode="delete", by="participant")
    assert not Message.objects.filter(participant=me).exists()
    assert not MemoryNote.objects.filter(participant=me).exists()
    alert = SafetyAlert.objects.get(participant=me)
    assert alert.excerpt == "" and alert.notes == ""


def test_crisis_resources_stay_visible_after_reload(client, me):
    client.post("/p/chat/new/")
    conversation = me.conversations.get()
    post_json(client, f"/p/chat/c/{conversation.pk}/send/", {"text": "I want to end my life"})
    page = client.get(f"/p/chat/c/{conversation.pk}/").content.decode()
    assert "findahelpline.com" in page


# --- send and stream in one request (what the chat page uses) -------------------------------


def reply_url(conversation) -> str:
    return f"/p/chat/c/{conversation.pk}/reply/"


def test_reply_stores_the_message_before_the_model_call_then_streams_in_one_request(
    client, me, upstream
):
    conversation = services.conversation_create(participant=me)
    upstream.script(count=1, reply="Olá **você**!")
    response = post_json(
        client,
        reply_url(conversation),
        {"text": "oi", "client_request_id": "one", "tz_offset": -180},
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    # the message is committed and nothing has reached the model before the body is read
    stored = Message.objects.get(role="user")
    assert stored.content == "oi" and stored.tz_offset_minutes == -180
    assert upstream.requests == []
    events = consume(response)
    names = [name for name, _ in events]
    assert names[:2] == ["message", "start"] and names[-1] == "done"
    assert events[0][1] == {"message": {"id": stored.pk, "text": "oi"}}
    assert "".join(data["t"] for name, data in events if name == "delta") == "Olá **você**!"
    assert events[-1][1]["html"] == "<p>Olá <strong>você</strong>!</p>"
    reply = Message.objects.get(role="assistant")
    assert reply.parent_id == stored.pk and reply.status == "complete"
    assert len(upstream.requests) == 1


def test_reply_retried_with_the_same_request_id_makes_no_second_model_call(client, me, upstream):
    conversation = services.conversation_create(participant=me)
    first = post_json(client, reply_url(conversation), {"text": "hi", "client_request_id": "r"})
    consume(first)
    again = post_json(client, reply_url(conversation), {"text": "hi", "client_request_id": "r"})
    assert again.status_code == 200 and again["Content-Type"] == "application/json"
    assert again.json()["message"]["text"] == "hi"
    assert Message.objects.filter(role="user").count() == 1
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"text": "   "}, 400, "empty"),
        ({"text": "x" * 9000}, 400, "too_long"),
        ("not json", 400, None),
        ([1, 2], 400, None),
    ],
)
def test_reply_rejects_bad_input_with_json_and_stores_nothing(
    client, me, upstream, body, status, code
):
    conversation = services.conversation_create(participant=me)
    raw = body if isinstance(body, str) else json.dumps(body)
    response = client.post(reply_url(conversation), raw, content_type="application/json")
    assert response.status_code == status
    assert response.json()["error"] and response.json().get("code") == code
    assert not Message.objects.exists() and upstream.requests == []


def test_reply_rate_limit_is_a_translated_429(client, me, upstream, monkeypatch):
    monkeypatch.setattr(
        services,
        "limits_for",
        lambda participant: {**services.DEFAULT_LIMITS, "messages_per_minute": 1},
    )
    conversation = services.conversation_create(participant=me)
    consume(post_json(client, reply_url(conversation), {"text": "one"}))
    response = client.post(
        reply_url(conversation),
        json.dumps({"text": "two"}),
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="pt-BR",
    )
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert "rápido" in response.json()["error"]
    assert Message.objects.filter(role="user").count() == 1


def test_reply_shows_crisis_resources_in_its_first_event(client, me, upstream):
    conversation = services.conversation_create(participant=me)
    events = consume(post_json(client, reply_url(conversation), {"text": "I want to end my life"}))
    name, data = events[0]
    assert name == "message" and data["crisis"]["severity"] == "high"
    assert "findahelpline.com" in data["crisis"]["html"]
    assert SafetyAlert.objects.filter(participant=me).count() == 1
    assert events[-1][0] == "done"


def test_reply_refuses_other_participants_and_people_without_a_session(
    client, chat_study, enroll, me, upstream
):
    other = enroll(chat_study)
    theirs = services.conversation_create(participant=other)
    response = post_json(client, reply_url(theirs), {"text": "x"})
    assert response.status_code == 404 and response.json()["error"]
    client.logout()
    mine = services.conversation_create(participant=me)
    anonymous = post_json(client, reply_url(mine), {"text": "x"})
    assert anonymous.status_code == 403
    assert anonymous.json()["redirect"].startswith("/p/signin/")
    assert not Message.objects.exists() and upstream.requests == []


def test_reply_needs_the_csrf_token(me, upstream):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    login(strict, me)
    conversation = services.conversation_create(participant=me)
    response = strict.post(
        reply_url(conversation), json.dumps({"text": "x"}), content_type="application/json"
    )
    assert response.status_code == 403
    assert not Message.objects.exists() and upstream.requests == []


def test_reply_sends_a_participant_with_new_consent_to_sign_it(
    client, me, upstream, chat_study, owner
):
    # given: a conversation, then the researchers publish consent version 2 (a real protocol
    # version through the studies service, as the console's designer does)
    import copy

    from studyplatform.studies.services import protocol_version_create

    conversation = services.conversation_create(participant=me)
    doc = copy.deepcopy(chat_study.current_version.content)
    doc["consent"]["documents"][0].update(version=2, body="New terms: we keep reply timings.")
    _, created = protocol_version_create(
        study=chat_study, doc=doc, author=owner, change_note="consent 2"
    )
    assert created
    # when: the participant, who signed version 1, asks for a reply
    response = post_json(client, reply_url(conversation), {"text": "x"})
    # then: they are sent to sign version 2 and nothing reaches the model
    assert response.status_code == 403 and response.json()["redirect"] == "/p/consent/renew/"
    assert not Message.objects.exists() and upstream.requests == []
