"""Storing a participant's message (chat/message_record.py, issue 19): on PostgreSQL one
statement when the safety screen has nothing to write, the ORM transaction otherwise, with the
same guarantees either way (chaining, withdrawal, one row per request id)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from studyplatform.chat import services
from studyplatform.chat.models import Conversation, Message
from studyplatform.safety.models import SafetyAlert
from tests.chat import test_chat_stream

pytestmark = pytest.mark.django_db

participant = test_chat_stream.participant  # an enrolled participant of the chat study
conversation = test_chat_stream.conversation

postgresql_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the one-statement path is PostgreSQL's"
)


def send(participant, conversation, text, **kw):
    return services.message_send(
        participant=participant, conversation=conversation, text=text, **kw
    )


def writes(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))
        and ("chat_message" in q["sql"] or "chat_conversation" in q["sql"])
    ]


@postgresql_only
def test_a_quiet_message_is_stored_in_one_statement(participant, conversation):
    first = send(participant, conversation, "hello").message
    # when
    with CaptureQueriesContext(connection) as queries:
        result = send(participant, conversation, "how are you?", client_request_id="r2")
    # then: one statement locked, inserted and moved the leaf; the row is what save() writes
    sql = writes(queries)
    assert len(sql) == 1 and "FOR UPDATE OF c" in sql[0] and "INSERT INTO" in sql[0]
    stored = Message.objects.get(pk=result.message.pk)
    assert stored.content == "how are you?"  # decrypted by its field: written encrypted
    assert stored.parent_id == first.pk == result.message.parent_id
    assert stored.status == Message.Status.PENDING and stored.client_request_id == "r2"
    assert stored.arm_id == conversation.arm_id
    assert stored.protocol_version_id == participant.study.current_version_id
    assert Conversation.objects.get(pk=conversation.pk).active_leaf_id == stored.pk
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM chat_message WHERE id = %s", [stored.pk])
        assert "how are you" not in cursor.fetchone()[0]


@postgresql_only
def test_the_statement_reads_the_studys_current_version_for_the_survey_hook(
    participant, conversation, django_capture_on_commit_callbacks, monkeypatch
):
    from surveys import engine

    current = participant.study.current_version_id
    participant.study.current_version_id = None  # a study object that predates a change
    seen = []
    monkeypatch.setattr(
        engine, "on_chat_message", lambda p, *, version_id=None, now=None: seen.append(version_id)
    )
    # when
    with (
        django_capture_on_commit_callbacks(execute=True),
        CaptureQueriesContext(connection) as queries,
    ):
        result = send(participant, conversation, "hello")
    # then: the version came from the database with the message, in the same statement
    assert result.study_version_id == current is not None
    assert seen == [current]
    study_reads = [
        q for q in queries.captured_queries if "studies_study" in q["sql"].split("FROM")[-1]
    ]
    assert not study_reads


def test_a_message_the_screen_fires_on_is_stored_with_its_alert(participant, conversation):
    # when: the lexicon detector fires
    result = send(participant, conversation, "I want to end my life")
    # then: the message and the alert were written together, and the crisis is reported
    assert result.created and result.crisis is not None
    assert SafetyAlert.objects.filter(message_id=result.message.pk).exists()
    assert Conversation.objects.get(pk=conversation.pk).active_leaf_id == result.message.pk


def test_a_repeated_request_id_returns_the_stored_message(participant, conversation):
    first = send(participant, conversation, "once", client_request_id="same")
    again = send(participant, conversation, "once", client_request_id="same")
    assert first.created and not again.created
    assert again.message.pk == first.message.pk
    assert Message.objects.filter(conversation=conversation).count() == 1


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_to_one_conversation_chain(participant, conversation, monkeypatch):
    # given: four threads sending at the same moment, three messages each (above the
    # per-minute limit, which is not what this test is about)
    limits = {**services.limits_for(participant), "messages_per_minute": 100}
    monkeypatch.setattr(services, "limits_for", lambda _participant: limits)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    built: dict[int, int] = {}  # message -> how many turns its model request carried

    def sender(slot: int):
        try:
            barrier.wait(timeout=10)
            for i in range(3):
                result = send(
                    participant, conversation, f"m{slot}-{i}", client_request_id=f"{slot}-{i}"
                )
                request = services.build_request(
                    user_message=result.message,
                    arm=conversation.arm,
                    participant=participant,
                    history=result.history,
                )
                assert request.messages[-1]["content"] == f"m{slot}-{i}"
                built[result.message.pk] = len(request.messages)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sender, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # then: every message hangs under the one before it: a single path, no two siblings
    assert errors == []
    rows = list(Message.objects.filter(conversation=conversation).values_list("pk", "parent_id"))
    assert len(rows) == 12
    parents = [parent for _, parent in rows]
    assert len(set(parents)) == 12 and parents.count(None) == 1
    leaf = Conversation.objects.get(pk=conversation.pk).active_leaf_id
    assert leaf not in parents and leaf in {pk for pk, _ in rows}
    # and every model request carried the whole chain up to its message, even when the
    # statement's snapshot missed a parent another thread committed while it waited
    parent_of = dict(rows)

    def depth(pk):
        return 0 if pk is None else 1 + depth(parent_of[pk])

    assert built == {pk: depth(pk) for pk, _ in rows}


@postgresql_only
def test_the_statement_reads_the_history_for_the_model_request(participant, conversation):
    # given: a memory note, a conversation opened from a task, and two earlier messages
    services.memory_save(participant=participant, text="I keep bees.")
    tasked = services.conversation_create(participant=participant, task_text="Say hello.")
    send(participant, tasked, "first")
    send(participant, tasked, "second")
    # when
    result = send(participant, tasked, "third")
    # then: the model request is built from what the storing statement read, with no query,
    # and is the one a fresh read gives
    with CaptureQueriesContext(connection) as queries:
        request = services.build_request(
            user_message=result.message,
            arm=tasked.arm,
            participant=participant,
            history=result.history,
        )
    assert queries.captured_queries == []
    fresh = services.build_request(
        user_message=result.message, arm=tasked.arm, participant=participant
    )
    assert request == fresh
    assert [m["content"] for m in request.messages] == ["first", "second", "third"]
    assert "I keep bees." in request.system and "Say hello." in request.system


@postgresql_only
def test_a_history_that_misses_the_messages_parent_is_read_again(participant, conversation):
    # given: a history as a statement would read it that waited for the conversation's lock
    # while another send committed: the new message's parent is not among its rows
    send(participant, conversation, "first")
    parent = send(participant, conversation, "second").message
    result = send(participant, conversation, "third")
    missing = services.message_record.History(
        [row for row in result.history.rows if row[0] != parent.pk],
        result.history.memory_token,
        result.history.task,
    )
    # when
    with CaptureQueriesContext(connection) as queries:
        request = services.build_request(
            user_message=result.message,
            arm=conversation.arm,
            participant=participant,
            history=missing,
        )
    # then: the branch was read again, whole
    assert len(queries.captured_queries) == 1
    assert [m["content"] for m in request.messages] == ["first", "second", "third"]
