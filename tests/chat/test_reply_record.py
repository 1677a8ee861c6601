"""How a finished reply is written: everything in one statement on PostgreSQL (one
transaction of three statements on SQLite), field for field what Model.save() writes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from studyplatform.chat import services
from studyplatform.chat.models import Conversation, Message
from studyplatform.chat.providers import StreamEnd

pytestmark = pytest.mark.django_db


@pytest.fixture
def participant(chat_study, enroll):
    return enroll(chat_study)


@pytest.fixture
def user_message(participant):
    conversation = services.conversation_create(participant=participant)
    return services.message_send(
        participant=participant, conversation=conversation, text="hello"
    ).message


def end():
    return StreamEnd(
        finish_reason="stop",
        model_reported="gpt-reported",
        system_fingerprint="fp",
        response_id="resp-1",
        prompt_tokens=12,
        completion_tokens=3,
        usage_estimated=False,
    )


def finish(user_message, reply=None, text="the whole reply"):
    now = timezone.now()
    return services.reply_finish(
        reply=reply,
        user_message=user_message,
        arm=user_message.conversation.arm,
        text=text,
        end=end(),
        status=Message.Status.COMPLETE,
        upstream_sent_at=now,
        first_token_at=now,
    )


def writes(queries):
    return [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "WITH"))
    ]


@pytest.mark.parametrize("checkpointed", [False, True])
def test_a_finished_reply_is_written_whole_and_the_conversation_points_at_it(
    user_message, checkpointed
):
    reply = None
    if checkpointed:
        reply = services.reply_start(
            user_message=user_message,
            arm=user_message.conversation.arm,
            first_token_at=timezone.now(),
            upstream_sent_at=timezone.now(),
            text="the wh",
        )
    with CaptureQueriesContext(connection) as captured:
        finished = finish(user_message, reply)
    # one statement on PostgreSQL; SQLite has no data-modifying CTEs
    assert len(writes(captured.captured_queries)) == (1 if connection.vendor == "postgresql" else 3)
    stored = Message.objects.get(role=Message.Role.ASSISTANT)
    assert stored.pk == finished.pk
    assert (stored.content, stored.status, stored.finish_reason) == (
        "the whole reply",
        "complete",
        "stop",
    )
    assert (stored.prompt_tokens, stored.completion_tokens, stored.model_reported) == (
        12,
        3,
        "gpt-reported",
    )
    assert (stored.provider_response_id, stored.system_fingerprint) == ("resp-1", "fp")
    assert stored.completed_at is not None and stored.parent_id == user_message.pk
    user_message.refresh_from_db()
    assert user_message.status == Message.Status.COMPLETE
    assert Conversation.objects.get().active_leaf_id == stored.pk
    # the content is encrypted at rest like any other message's
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM chat_message WHERE id = %s", [stored.pk])
        assert "whole reply" not in str(cursor.fetchone()[0])


def test_a_retried_finish_finishes_the_row_an_earlier_attempt_committed(user_message):
    # given: a first attempt whose write committed, but whose answer the stream never got
    now = timezone.now()
    kwargs = {
        "reply": None,
        "user_message": user_message,
        "arm": user_message.conversation.arm,
        "text": "all of it",
        "end": end(),
        "status": Message.Status.COMPLETE,
        "upstream_sent_at": now,
        "first_token_at": now,
    }
    first = services.reply_finish(**kwargs)
    # when: the stream tries again
    again = services.reply_finish(**kwargs, retrying=True)
    # then: still one reply
    assert again.pk == first.pk
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1
