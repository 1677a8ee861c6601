"""The stale-reply sweep: a reply left `streaming` because its process could not record how it
ended (database down at finalise time, process killed) is finalised as error /
internal_interrupted once its last checkpoint is older than STALE_REPLY_AFTER_S."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import OperationalError
from django.utils import timezone

from studyplatform.beat import BEAT_SCHEDULE
from studyplatform.chat import services
from studyplatform.chat.models import Conversation, Message, ReplyCode
from studyplatform.chat.tasks import stale_reply_sweep
from tests.chat.conftest import run_reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def participant(chat_study, enroll):
    return enroll(chat_study)


@pytest.fixture
def conversation(participant):
    return services.conversation_create(participant=participant)


def started_reply(participant, conversation, text: str, *, partial: str, at: dt.datetime):
    """A reply that got its first token at `at` and saved `partial` at its checkpoint."""
    user = services.message_send(
        participant=participant, conversation=conversation, text=text
    ).message
    reply = services.reply_start(
        user_message=user,
        arm=participant.allocation.arm,
        first_token_at=at,
        upstream_sent_at=at,
    )
    services.reply_checkpoint(reply, partial)
    return user, reply


def test_a_reply_whose_finish_could_not_be_recorded_is_finalised_by_the_sweep(
    participant, conversation, upstream, monkeypatch, settings
):
    # given: the real stream runs, but the database refuses the final write
    settings.STALE_REPLY_AFTER_S = 600

    def failing_finish(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(services, "reply_finish", failing_finish)
    # The row is written at the first checkpoint (a shorter reply only by the finish): here at
    # the first token.
    monkeypatch.setattr("studyplatform.chat.streaming.CHECKPOINT_S", 0.0)
    user = services.message_send(
        participant=participant, conversation=conversation, text="[[reply: half of it]] hi"
    ).message
    run_reply(user.pk)
    monkeypatch.undo()
    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.STREAMING
    checkpoint = reply.checkpoint_at
    assert checkpoint is not None
    # when: the sweep runs before the limit has passed, nothing changes
    just_before = checkpoint + dt.timedelta(seconds=599)
    assert services.stale_replies_finish(now=just_before) == 0
    reply.refresh_from_db()
    assert reply.status == Message.Status.STREAMING
    # when: it runs after the limit
    after = checkpoint + dt.timedelta(seconds=601)
    assert services.stale_replies_finish(now=after) == 1
    # then: the reply is an internal failure, not the participant's choice, finished then
    reply.refresh_from_db()
    assert reply.status == Message.Status.ERROR
    assert reply.error_code == ReplyCode.INTERNAL_INTERRUPTED
    assert reply.error_code in ReplyCode.INTERNAL
    assert reply.completed_at == after
    assert reply.tokens_estimated
    # and the participant's message is no longer waiting for a reply
    user.refresh_from_db()
    assert user.status == Message.Status.COMPLETE
    # and a second run finds nothing
    assert services.stale_replies_finish(now=after + dt.timedelta(hours=1)) == 0


def test_the_partial_text_is_kept_and_a_later_retry_stays_the_active_leaf(
    participant, conversation, settings
):
    # given: a reply abandoned 20 minutes ago with some text saved at its checkpoint
    settings.STALE_REPLY_AFTER_S = 600
    now = timezone.now()
    user, abandoned = started_reply(
        participant,
        conversation,
        "tell me something",
        partial="The first words of the",
        at=now - dt.timedelta(minutes=20),
    )
    Message.objects.filter(pk=abandoned.pk).update(checkpoint_at=now - dt.timedelta(minutes=19))
    # and the participant retried: a second reply to the same message completed
    retry = services.reply_finish(
        reply=None,
        user_message=user,
        arm=participant.allocation.arm,
        text="A whole answer.",
        end=None,
        status=Message.Status.COMPLETE,
        upstream_sent_at=now,
    )
    # when: the sweep runs
    assert stale_reply_sweep() == 1
    # then: the abandoned reply keeps its words and is marked interrupted
    abandoned.refresh_from_db()
    assert abandoned.content == "The first words of the"
    assert (abandoned.status, abandoned.error_code) == ("error", "internal_interrupted")
    assert abandoned.completion_tokens > 0
    # and the conversation still shows the retry
    assert Conversation.objects.get(pk=conversation.pk).active_leaf_id == retry.pk
    retry.refresh_from_db()
    assert (retry.status, retry.error_code) == ("complete", "")


def test_a_long_reply_that_keeps_checkpointing_is_left_alone(participant, conversation, settings):
    # given: a reply that started 30 minutes ago and saved text a moment ago
    settings.STALE_REPLY_AFTER_S = 600
    _, reply = started_reply(
        participant,
        conversation,
        "a long one",
        partial="still going",
        at=timezone.now() - dt.timedelta(minutes=30),
    )
    # when: the sweep runs
    assert services.stale_replies_finish() == 0
    # then: it is still streaming
    reply.refresh_from_db()
    assert reply.status == Message.Status.STREAMING and reply.error_code == ""


def test_the_limit_is_a_setting(participant, conversation, settings):
    # given: a reply whose last checkpoint is 2 minutes old
    _, reply = started_reply(
        participant,
        conversation,
        "hello",
        partial="hi",
        at=timezone.now() - dt.timedelta(minutes=2),
    )
    Message.objects.filter(pk=reply.pk).update(
        checkpoint_at=timezone.now() - dt.timedelta(minutes=2)
    )
    # then: the default 10 minutes leaves it; a 60 s limit finalises it
    settings.STALE_REPLY_AFTER_S = 600
    assert services.stale_replies_finish() == 0
    settings.STALE_REPLY_AFTER_S = 60
    assert services.stale_replies_finish() == 1


def test_the_sweep_is_scheduled_on_beat_and_expires_before_its_next_run():
    entry = BEAT_SCHEDULE["chat-stale-reply-sweep"]
    assert entry["task"] == stale_reply_sweep.name
    assert entry["options"]["expires"] < entry["schedule"]
