"""The cached participant gate's invalidation (issue 19): every service that can change the
gate's answer replaces a gate token (core.gate_epoch), so a session's cached entry stops
matching and the next send checks again from the database. Each test builds its state through
the real services and fails if that service's bump is removed."""

from __future__ import annotations

import copy
import time

import pytest
from django.utils import timezone

from studyplatform.chat import services
from studyplatform.chat.models import Message
from studyplatform.core.gate_epoch import gate_tokens, participant_key, study_key
from studyplatform.core.redis_client import redis_sync
from studyplatform.participants.services import participant_withdraw
from studyplatform.participants.services.enrollment import consent_renew
from studyplatform.participants.session import GATE_KEY
from studyplatform.studies.services import protocol_version_create, study_transition
from tests.chat import test_chat_send_gate
from tests.chat.test_chat_send_gate import consume, reply

pytestmark = pytest.mark.django_db

me = test_chat_send_gate.me  # a signed-in participant of the chat study


@pytest.fixture
def warm(client, me, upstream):
    """A conversation with one answered message: the session holds a gate entry that matches
    the current tokens."""
    conversation = services.conversation_create(participant=me)
    assert consume(reply(client, conversation, "first"))[-1][0] == "done"
    assert cached_gate_matches(client, me)
    return conversation


def cached_gate_matches(client, participant) -> bool:
    entry = client.session.get(GATE_KEY)
    return entry is not None and entry[2:] == gate_tokens(participant.pk, participant.study_id)


def consent_v2(study, owner):
    doc = copy.deepcopy(study.current_version.content)
    doc["consent"]["documents"][0].update(version=2, body="New terms: we keep reply timings.")
    _, created = protocol_version_create(study=study, doc=doc, author=owner, change_note="v2")
    assert created


def test_withdrawal_invalidates_the_cached_gate(client, me, warm):
    # given: a warm session
    # when: the participant withdraws through the service
    participant_withdraw(participant=me, mode="keep", by="participant")
    # then: the session's cached gate no longer matches, and the send is refused
    assert not cached_gate_matches(client, me)
    response = reply(client, warm, "after withdrawing")
    assert response.status_code == 403
    assert response.json()["redirect"] == "/p/withdrawn/"
    assert "after withdrawing" not in [m.content for m in Message.objects.all()]


def test_a_gate_read_between_the_withdrawal_and_its_commit_is_invalidated_again(
    me, django_capture_on_commit_callbacks
):
    # given: a request that reads the tokens after the withdrawal's first bump but before its
    # commit (it would then see the participant still active in the database)
    with django_capture_on_commit_callbacks(execute=True):
        participant_withdraw(participant=me, mode="keep", by="participant")
        seen_before_commit = gate_tokens(me.pk, me.study_id)
    # then: the bump after commit replaced the token that request would cache its answer under
    assert gate_tokens(me.pk, me.study_id) != seen_before_commit


def test_a_new_consent_version_invalidates_the_cached_gate(client, me, warm, chat_study, owner):
    # given: a warm session
    # when: the researchers publish consent version 2 (a new protocol version)
    consent_v2(chat_study, owner)
    # then: the cached gate no longer matches: the send checks consent and is sent to re-sign
    assert not cached_gate_matches(client, me)
    response = reply(client, warm, "under the old consent")
    assert response.status_code == 403
    assert response.json()["redirect"] == "/p/consent/renew/"
    assert "under the old consent" not in [m.content for m in Message.objects.all()]


def test_re_consenting_replaces_the_participants_gate_token(client, me, chat_study, owner):
    # given: consent version 2 is due
    consent_v2(chat_study, owner)
    me.refresh_from_db()
    before = gate_tokens(me.pk, me.study_id)
    # when: the participant signs it through the service
    document = chat_study.consent_documents.get(version=2, language=me.language)
    consent_renew(
        participant=me,
        choices={c["key"]: True for c in document.checkboxes},
        signature_name="P",
    )
    # then: the participant's token changed (the study's did not)
    after = gate_tokens(me.pk, me.study_id)
    assert after[0] != before[0] and after[1] == before[1]


def test_closing_the_study_invalidates_the_cached_gate(client, me, warm, chat_study, owner):
    # given: a warm session
    # when: the researchers close the study through the service
    study_transition(study=chat_study, to="closed", actor=owner)
    # then: the cached gate no longer matches, and the send is refused as closed
    assert not cached_gate_matches(client, me)
    response = reply(client, warm, "after the end")
    assert response.status_code == 403
    assert response.json()["code"] == "study_closed"
    assert "after the end" not in [m.content for m in Message.objects.all()]


def test_a_token_redis_lost_never_makes_an_old_entry_match_again(client, me, warm):
    # given: a warm session; Redis loses both tokens (restart, eviction)
    redis_sync().delete(participant_key(me.pk), study_key(me.study_id))
    # then: fresh random tokens replace them, which the old entry does not match
    assert not cached_gate_matches(client, me)
    # and the next send checks again and caches its answer under the new tokens
    consume(reply(client, warm, "again"))
    assert cached_gate_matches(client, me)


def test_a_warm_send_reads_no_consent_and_loads_the_participant_with_the_conversation(
    client, me, warm
):
    # given: a warm session
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # when: the participant sends again
    with CaptureQueriesContext(connection) as queries:
        response = reply(client, warm, "second")
        consume(response)
    # then: no consent query, and neither the participant row nor the study's protocol is
    # loaded by a query of its own (they come with the conversation)
    sql = [q["sql"].lower() for q in queries.captured_queries]
    assert not any("consentdocument" in s or "consentrecord" in s for s in sql)
    own_loads = [
        s
        for s in sql
        if s.startswith("select")
        and "join" not in s
        and ('from "participants_participant"' in s or 'from "studies_protocolversion"' in s)
    ]
    assert own_loads == []


def test_a_warm_send_reads_its_session_gate_tokens_and_counters_in_one_round_trip(
    client, me, warm, monkeypatch
):
    # given: a warm session, and a record of the send's Redis round trips
    from redis.client import Pipeline, Redis

    from studyplatform.core.redis_client import InFlight

    trips: list[tuple[str, ...]] = []
    execute_command, execute_pipeline = Redis.execute_command, Pipeline.execute
    in_flight = InFlight.__init__

    def command(self, *args, **options):
        trips.append((str(args[0]),))
        return execute_command(self, *args, **options)

    def pipeline(self, *args, **kwargs):
        trips.append(tuple(str(c[0][0]) for c in self.command_stack))
        return execute_pipeline(self, *args, **kwargs)

    def split(self, client, commands):
        trips.append(tuple(str(c[0]) for c in commands))
        in_flight(self, client, commands)

    monkeypatch.setattr(Redis, "execute_command", command)
    monkeypatch.setattr(Pipeline, "execute", pipeline)
    monkeypatch.setattr(InFlight, "__init__", split)
    # when: the participant sends again
    response = reply(client, warm, "second")
    # then: the session, the gate's tokens, the minute's count and today's tokens came in
    # one trip (the script), first; nothing else read the session or the tokens, or counted
    assert response.status_code == 200
    assert trips[0] == ("EVAL",)
    assert not [t for t in trips if {"GET", "MGET", "INCRBY"} & set(t)]
    consume(response)
    assert cached_gate_matches(client, me)
    assert Message.objects.filter(conversation=warm, role=Message.Role.USER).count() == 2


def test_a_session_missing_from_redis_is_read_from_the_database_and_the_send_goes_on(
    client, me, warm
):
    # given: the session's Redis copy is gone (expired, or Redis restarted); the count so far
    # (per clock minute: the send below stays in this one)
    if timezone.now().second >= 55:
        time.sleep(61 - timezone.now().second)
    key = f"chat:rate:{me.pk}:{timezone.now():%Y%m%d%H%M}"
    counted = int(redis_sync().get(key) or 0)
    assert redis_sync().delete(f"sp:session:{client.session.session_key}") == 1
    # when
    response = reply(client, warm, "second")
    # then: the send went through on the database's session and was counted once
    assert response.status_code == 200
    assert consume(response)[-1][0] == "done"
    assert int(redis_sync().get(key)) == counted + 1
    assert redis_sync().exists(f"sp:session:{client.session.session_key}")


def test_another_participants_conversation_is_not_found_with_a_warm_session(
    client, me, warm, chat_study, enroll
):
    # given: someone else's conversation in the same study
    theirs = services.conversation_create(participant=enroll(chat_study))
    # when: the warm session sends to it
    response = reply(client, theirs, "hello")
    # then: 404, and nothing was stored there
    assert response.status_code == 404
    assert not Message.objects.filter(conversation=theirs).exists()


def test_the_send_counts_a_refused_send_towards_the_minutes_limit(
    client, me, warm, chat_study, owner, monkeypatch
):
    # given: a limit of one send a minute, and a new consent version the participant has not
    # signed
    monkeypatch.setattr(
        services,
        "limits_for",
        lambda participant: {**services.DEFAULT_LIMITS, "messages_per_minute": 1},
    )
    consent_v2(chat_study, owner)
    # The count is per clock minute: start from none (the fixture's send may lie in this
    # minute or the last), and keep both sends below in one minute.
    if timezone.now().second >= 50:
        time.sleep(61 - timezone.now().second)
    redis_sync().delete(*redis_sync().keys(f"chat:rate:{me.pk}:*") or ["-"])
    # when: a send is refused by the gate, then the participant signs and sends
    assert reply(client, warm, "before signing").status_code == 403
    me.refresh_from_db()
    document = chat_study.consent_documents.get(version=2, language=me.language)
    consent_renew(
        participant=me,
        choices={c["key"]: True for c in document.checkboxes},
        signature_name="P",
    )
    # then: the refused attempt counted (the count is taken with the gate's tokens, before
    # the gate): the minute's limit is reached
    response = reply(client, warm, "after signing")
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"


def test_without_the_combined_read_the_gate_and_the_limit_read_redis_themselves(
    client, me, warm, monkeypatch
):
    # given: the combined read fails (Redis hiccup)
    from redis.exceptions import ConnectionError as RedisConnectionError

    def failing(*args):
        raise RedisConnectionError("gone for a moment")

    monkeypatch.setattr(services, "session_counters_begin", failing)
    monkeypatch.setattr(services, "send_counters", failing)
    # when: the participant sends
    response = reply(client, warm, "second")
    # then: the session is read on its own, the gate and the limits read Redis on their own,
    # and the send goes through
    assert consume(response)[-1][0] == "done"
    stored = Message.objects.filter(conversation=warm, role=Message.Role.USER)
    assert [m.content for m in stored.order_by("pk")] == ["first", "second"]


def test_the_gate_keeps_the_participants_study_in_the_session(client, me, warm):
    # given: a session signed in with the participant's id alone (fixture `me`), then a send
    from studyplatform.participants.session import SESSION_STUDY_KEY

    # then: the gate that let the send through noted the study beside the id
    assert client.session[SESSION_STUDY_KEY] == me.study_id


def test_the_send_begins_its_redis_read_before_it_reads_the_conversation(
    client, me, warm, monkeypatch
):
    # given: a warm session, a conversation this process keeps no row of, and a record of
    # the send's steps
    from studyplatform.chat import send_load

    send_load.send_cache.clear()
    steps: list[str] = []
    begin, read = services.session_counters_begin, services.PendingSessionCounters.result
    load = send_load.conversation_for_send

    def begun(*args):
        pending = begin(*args)
        steps.append("redis written")
        return pending

    def result(self):
        steps.append("redis read")
        return read(self)

    def conversation(*args):
        steps.append("conversation read")
        return load(*args)

    monkeypatch.setattr(services, "session_counters_begin", begun)
    monkeypatch.setattr(services.PendingSessionCounters, "result", result)
    monkeypatch.setattr(send_load, "conversation_for_send", conversation)
    # when
    response = reply(client, warm, "second")
    # then: Redis had the commands while the database read the conversation
    assert response.status_code == 200
    assert steps == ["redis written", "conversation read", "redis read"]
    assert consume(response)[-1][0] == "done"
    assert cached_gate_matches(client, me)


def test_a_session_naming_another_study_lends_the_gate_no_tokens(client, me, warm, monkeypatch):
    # given: a session whose study is not the participant's (hand-made), and a record of
    # the gate's own token reads
    from studyplatform.core import gate_epoch
    from studyplatform.participants.session import SESSION_STUDY_KEY

    session = client.session
    session[SESSION_STUDY_KEY] = me.study_id + 1000
    session.save()
    own_reads: list[int] = []
    tokens = gate_epoch.gate_tokens

    def reading(participant_id, study_id):
        own_reads.append(study_id)
        return tokens(participant_id, study_id)

    monkeypatch.setattr(gate_epoch, "gate_tokens", reading)
    # when
    response = reply(client, warm, "second")
    # then: the gate read the participant's real study's tokens itself, and the send went on;
    # the session now names the right study
    assert response.status_code == 200
    assert own_reads == [me.study_id]
    assert consume(response)[-1][0] == "done"
    assert client.session[SESSION_STUDY_KEY] == me.study_id


def test_a_failed_conversation_read_drops_the_redis_replies_it_did_not_read(
    client, me, warm, monkeypatch
):
    # given: a database that fails the conversation's read
    from django.db import OperationalError

    from studyplatform.chat import send_load

    send_load.send_cache.clear()
    dropped: list[bool] = []
    discard = services.PendingSessionCounters.discard

    def noting(self):
        dropped.append(True)
        discard(self)

    def failing(*args):
        raise OperationalError("the database went away")

    monkeypatch.setattr(services.PendingSessionCounters, "discard", noting)
    monkeypatch.setattr(send_load, "conversation_for_send", failing)
    # when
    response = reply(client, warm, "second")
    # then: 503 "not stored", the unread replies were dropped, and Redis still answers
    assert response.status_code == 503
    assert dropped == [True]
    assert redis_sync().ping()
