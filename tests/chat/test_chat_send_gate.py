"""The send path's cached checks and cheap writes (issue 19): the session's consent entry, the
tokens-used counter in Redis and idempotency by the unique key, each shown to fall back to the
database's answer whenever what it cached stopped being true."""

from __future__ import annotations

import copy
import json

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from studyplatform.chat import services
from studyplatform.chat.models import Message
from studyplatform.core.redis_client import redis_sync
from studyplatform.participants.services import participant_withdraw
from studyplatform.participants.session import GATE_KEY, SESSION_KEY
from tests.chat.conftest import parse_sse

pytestmark = pytest.mark.django_db


def login(client, participant):
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def consume(response) -> list:
    async def read():
        return [
            chunk.decode() if isinstance(chunk, bytes) else chunk
            async for chunk in response.streaming_content
        ]

    return parse_sse(async_to_sync(read)())


def reply(client, conversation, text, request_id=""):
    return client.post(
        f"/p/chat/c/{conversation.pk}/reply/",
        json.dumps({"text": text, "client_request_id": request_id}),
        content_type="application/json",
    )


@pytest.fixture
def me(chat_study, enroll, client):
    participant = enroll(chat_study)
    login(client, participant)
    return participant


@pytest.fixture
def warm(client, me, upstream):
    """A conversation with one answered message: the session's consent entry is set."""
    conversation = services.conversation_create(participant=me)
    events = consume(reply(client, conversation, "first"))
    assert events[-1][0] == "done"
    assert client.session[GATE_KEY][0] == me.pk
    return conversation


def test_a_warm_session_skips_the_consent_queries(client, me, warm):
    # given: a session that passed the consent check (fixture `warm`)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # when: the participant sends again
    with CaptureQueriesContext(connection) as queries:
        response = reply(client, warm, "second")
    # then: neither the consent documents nor the consent records were read
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert response.status_code == 200
    assert "consentdocument" not in sql and "consentrecord" not in sql
    consume(response)


def test_a_withdrawn_participant_with_a_warm_session_cannot_send(client, me, warm, upstream):
    # given: a warm session, then the participant withdraws (keeping their data)
    participant_withdraw(participant=me, mode="keep", by="participant")
    calls = len(upstream.requests)
    # when: the same browser sends again
    response = reply(client, warm, "after withdrawing")
    # then: refused before anything is stored or sent to the model
    assert response.status_code == 403
    assert response.json()["redirect"] == "/p/withdrawn/"
    assert "after withdrawing" not in [m.content for m in Message.objects.all()]
    assert len(upstream.requests) == calls


def test_the_send_itself_refuses_a_withdrawn_participant_whatever_the_caller_loaded(me, chat_study):
    # given: a participant object loaded while active (as a request that passed the gate holds
    # it), then a withdrawal commits before the message is stored
    conversation = services.conversation_create(participant=me)
    loaded = type(me).objects.select_related("study__current_version").get(pk=me.pk)
    participant_withdraw(participant=me, mode="keep", by="participant")
    # when: the send goes on with the stale object
    with pytest.raises(services.ChatError) as refused:
        services.message_send(participant=loaded, conversation=conversation, text="late")
    # then: the INSERT's own transaction saw the withdrawal
    assert refused.value.code == "withdrawn"
    assert not Message.objects.exists()


def test_a_new_consent_version_invalidates_a_warm_session(client, me, warm, chat_study, owner):
    # given: a warm session, then the researchers publish consent version 2
    from studyplatform.studies.services import protocol_version_create

    doc = copy.deepcopy(chat_study.current_version.content)
    doc["consent"]["documents"][0].update(version=2, body="New terms: we keep reply timings.")
    _, created = protocol_version_create(
        study=chat_study, doc=doc, author=owner, change_note="consent 2"
    )
    assert created
    # when: the participant sends again from the same browser
    response = reply(client, warm, "under the old consent")
    # then: they are sent to sign version 2 and nothing is stored
    assert response.status_code == 403
    assert response.json()["redirect"] == "/p/consent/renew/"
    assert "under the old consent" not in [m.content for m in Message.objects.all()]
    assert GATE_KEY not in client.session


def test_a_changed_language_rechecks_consent(client, me, warm):
    # given: a warm session; the participant's language changes (its consent text may differ)
    type(me).objects.filter(pk=me.pk).update(language="pt-br")
    # when: they send again
    consume(reply(client, warm, "oi"))
    # then: the entry was rebuilt for the new language by a real check
    assert client.session[GATE_KEY][1] == "pt-br"


def test_a_closed_study_refuses_sends_from_a_warm_session(client, me, warm, chat_study, owner):
    # given: a warm session, then the researchers close the study
    from studyplatform.studies.services import study_transition

    study_transition(study=chat_study, to="closed", actor=owner)
    # when: the participant sends again
    response = reply(client, warm, "after the end")
    # then: a 403 naming the reason, nothing stored, the participant keeps the text
    assert response.status_code == 403
    assert response.json()["code"] == "study_closed"
    assert "ended" in response.json()["error"]
    assert "after the end" not in [m.content for m in Message.objects.all()]


def test_a_retry_past_the_rate_limit_still_gets_its_stored_message(me, monkeypatch):
    # given: a limit of one message a minute and a message stored with request id "r"
    monkeypatch.setattr(
        services,
        "limits_for",
        lambda participant: {**services.DEFAULT_LIMITS, "messages_per_minute": 1},
    )
    conversation = services.conversation_create(participant=me)
    first = services.message_send(
        participant=me, conversation=conversation, text="hi", client_request_id="r"
    )
    # when: the client retries it (its answer was lost), which the limiter now counts as over
    again = services.message_send(
        participant=me, conversation=conversation, text="hi", client_request_id="r"
    )
    # then: the stored message, once, rather than "too fast"
    assert not again.created and again.message.pk == first.message.pk
    assert Message.objects.count() == 1


def _finished_reply(participant, conversation, tokens: int) -> None:
    user = services.message_send(participant=participant, conversation=conversation, text="q")
    end = services.StreamEnd(
        finish_reason="stop",
        model_reported="m",
        system_fingerprint=None,
        response_id="r",
        prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2,
        usage_estimated=False,
    )
    services.reply_finish(
        reply=None,
        user_message=user.message,
        arm=conversation.arm,
        text="a",
        end=end,
        status="complete",
        upstream_sent_at=timezone.now(),
    )


def test_the_daily_token_limit_counts_in_redis_and_survives_losing_the_counter(me, monkeypatch):
    # given: a 1000-token day, a first send (which seeds today's counter) and a 600-token reply
    monkeypatch.setattr(
        services,
        "limits_for",
        lambda participant: {**services.DEFAULT_LIMITS, "tokens_per_day": 1000},
    )
    conversation = services.conversation_create(participant=me)
    _finished_reply(me, conversation, 600)
    key = services._tokens_key(me.pk, timezone.now())
    assert int(redis_sync().get(key)) == 600
    # and a second 600-token reply: the counter passes the limit
    _finished_reply(me, conversation, 600)
    assert int(redis_sync().get(key)) == 1200
    with pytest.raises(services.ChatError) as refused:
        services.message_send(participant=me, conversation=conversation, text="more")
    assert refused.value.code == "daily_tokens"
    # when: Redis loses the counter (a restart without persistence)
    redis_sync().delete(key)
    # then: the limit still holds, from the message log, and the counter is rebuilt
    with pytest.raises(services.ChatError) as again:
        services.message_send(participant=me, conversation=conversation, text="more")
    assert again.value.code == "daily_tokens"
    assert int(redis_sync().get(key)) == 1200


def test_a_reply_row_commit_failing_after_the_upstream_started_keeps_what_was_shown(
    me, upstream, monkeypatch
):
    # given: a stored message; the database refuses the reply row's INSERT at its first
    # checkpoint (here: the first token), that is after the upstream request started and the
    # first words reached the participant
    from django.db import OperationalError

    from tests.chat.conftest import run_reply

    def refused_start(**kwargs):
        raise OperationalError("could not commit: the server closed the connection")

    monkeypatch.setattr(services, "reply_start", refused_start)
    monkeypatch.setattr("studyplatform.chat.streaming.CHECKPOINT_S", 0.0)
    conversation = services.conversation_create(participant=me)
    user = services.message_send(
        participant=me, conversation=conversation, text="[[reply: one two three]] hi"
    ).message
    # when: the reply streams
    events = run_reply(user.pk)
    # then: exactly one model call; the participant saw the first words, then a retryable
    # error saying what arrived is kept, and the log holds exactly those words, once
    assert len(upstream.requests) == 1
    shown = "".join(data["t"] for name, data in events if name == "delta")
    assert shown
    name, data = events[-1]
    assert name == "error" and data["code"] == "internal" and data["partial"] is True
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert (reply.status, reply.error_code) == ("error", "internal_database")
    assert reply.content == shown and reply.parent_id == user.pk
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
