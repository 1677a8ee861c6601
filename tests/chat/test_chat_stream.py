"""The proxied, logged reply stream against a real loopback OpenAI-compatible server: happy
path, every fault the test upstream can inject, stop, and idempotent sends."""

from __future__ import annotations

import pytest
from django.db import connection

from studyplatform.chat import services
from studyplatform.chat.models import Conversation, Message
from tests.chat.conftest import run_reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def participant(chat_study, enroll):
    return enroll(chat_study)


@pytest.fixture
def conversation(participant):
    return services.conversation_create(participant=participant)


def send(participant, conversation, text, **kw):
    return services.message_send(
        participant=participant, conversation=conversation, text=text, **kw
    ).message


def only_user_message(conversation, text):
    rows = Message.objects.filter(conversation=conversation, role="user")
    assert [m.content for m in rows] == [text]
    return rows.get()


def test_a_reply_streams_and_every_detail_is_logged(participant, conversation, upstream):
    user = send(
        participant, conversation, "[[reply: Hello there friend]] hi", tz_offset_minutes=-180
    )
    events = run_reply(user.pk)
    kinds = [e for e, _ in events]
    # a reply shorter than a checkpoint is written once, at its end: no reply event, the id
    # comes with done
    assert kinds[:2] == ["start", "delta"] and kinds[-1] == "done" and "reply" not in kinds
    assert "".join(d["t"] for e, d in events if e == "delta") == "Hello there friend"
    reply = Message.objects.get(role="assistant")
    assert reply.parent == user and reply.content == "Hello there friend"
    assert reply.status == "complete" and reply.finish_reason == "stop"
    assert reply.model_requested == participant.allocation.arm.model_name
    assert reply.model_reported and reply.system_fingerprint
    assert reply.prompt_tokens > 0 and reply.completion_tokens == 3
    assert not reply.tokens_estimated
    assert reply.upstream_sent_at <= reply.first_token_at <= reply.completed_at
    assert reply.latency_ms is not None and reply.protocol_version == user.protocol_version
    assert reply.arm == participant.allocation.arm
    user.refresh_from_db()
    assert user.tz_offset_minutes == -180
    assert Conversation.objects.get().active_leaf == reply


def test_a_reply_shorter_than_a_checkpoint_is_written_once_at_its_end(
    participant, conversation, upstream, monkeypatch
):
    # given: the reply row's INSERT while streaming is counted
    started = []
    real_start = services.reply_start
    monkeypatch.setattr(services, "reply_start", lambda **kw: started.append(1) or real_start(**kw))
    user = send(participant, conversation, "[[reply: short and sweet]] hi")
    # when
    events = run_reply(user.pk)
    # then: no row while streaming; the finish wrote the whole reply with its first-token time
    assert started == []
    reply = Message.objects.get(role="assistant")
    assert events[-1] == ("done", {**events[-1][1], "reply": reply.pk})
    assert (reply.content, reply.status) == ("short and sweet", "complete")
    assert reply.upstream_sent_at <= reply.first_token_at <= reply.completed_at
    assert reply.created_at == reply.first_token_at and reply.latency_ms is not None


def test_a_long_reply_is_written_at_its_first_checkpoint_with_the_text_so_far(
    participant, conversation, upstream, monkeypatch
):
    # given: every token is a checkpoint; the row as first written is kept
    rows = []
    real_start = services.reply_start

    def spy(**kw):
        reply = real_start(**kw)
        rows.append((reply.status, Message.objects.get(pk=reply.pk).content))
        return reply

    monkeypatch.setattr(services, "reply_start", spy)
    monkeypatch.setattr("studyplatform.chat.streaming.CHECKPOINT_S", 0.0)
    user = send(participant, conversation, "[[reply: one two three]] hi")
    # when
    events = run_reply(user.pk)
    # then: the row was written once while streaming, holding the words shown so far, and its
    # id went out right after them; the finish completed that same row
    first = events[[e for e, _ in events].index("delta")][1]["t"]
    assert rows == [("streaming", first)]
    assert [e for e, _ in events][:3] == ["start", "delta", "reply"]
    reply = Message.objects.get(role="assistant")
    assert events[2][1] == {"id": reply.pk}
    assert (reply.content, reply.status) == ("one two three", "complete")


def test_the_request_carries_system_prompt_memory_and_the_active_branch(
    participant, conversation, upstream
):
    services.memory_save(participant=participant, text="Call me Ana. I like short answers.")
    first = send(participant, conversation, "[[reply: one]] first")
    run_reply(first.pk)
    second = send(participant, conversation, "[[reply: two]] second")
    run_reply(second.pk)
    body = upstream.requests[-1]
    assert body["model"] == participant.allocation.arm.model_name
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    system = body["messages"][0]
    assert system["role"] == "system" and "friendly, helpful assistant" in system["content"]
    assert "Call me Ana." in system["content"]
    assert [m["content"] for m in body["messages"][1:]] == [
        "[[reply: one]] first",
        "one",
        "[[reply: two]] second",
    ]
    assert body["temperature"] == 0.7 and body["max_tokens"] == 1024


def answered_beyond_the_budget(participant, conversation):
    """Six answered messages of ~65 words each on an arm whose context holds about two; the
    last message."""
    arm = participant.allocation.arm
    arm.context_tokens = 1500  # minus 1024 reserved for the reply and the system prompt
    arm.save()
    for i in range(6):
        m = send(participant, conversation, f"[[reply: ok]] message {i} " + "word " * 60)
        run_reply(m.pk)
    return m


def test_history_is_truncated_oldest_first_to_the_context_budget(
    participant, conversation, upstream
):
    answered_beyond_the_budget(participant, conversation)
    sent = [m["content"] for m in upstream.requests[-1]["messages"] if m["role"] == "user"]
    assert sent[-1].startswith("[[reply: ok]] message 5")
    assert not any(s.startswith("[[reply: ok]] message 0") for s in sent)


def test_building_the_request_decrypts_only_the_turns_it_sends(
    participant, conversation, upstream, monkeypatch
):
    # given: a conversation longer than the context budget, plus another branch's reply
    m = answered_beyond_the_budget(participant, conversation)
    run_reply(m.pk)  # a retry: the first reply to message 5 is now on another branch
    last = send(participant, conversation, "[[reply: ok]] last")
    # when: the model request is built by a process that decrypted nothing before (its kept
    # texts cleared), counting decryptions
    from studyplatform.core import fields

    services.history_texts().clear()
    decrypted = []
    real = fields.decrypt_str
    counting = lambda t: decrypted.append(t) or real(t)  # noqa: E731
    monkeypatch.setattr(fields, "decrypt_str", counting)
    request = services.build_request(
        user_message=last, arm=participant.allocation.arm, participant=participant
    )
    # then: one decryption per turn sent, plus at most the turn that overran the budget
    assert request.messages[-1]["content"] == "[[reply: ok]] last"
    assert len(decrypted) <= len(request.messages) + 1
    assert len(request.messages) < Message.objects.filter(conversation=conversation).count() - 1


@pytest.mark.parametrize("fault,code", [("429", "upstream_429"), ("500", "upstream_500")])
def test_an_upstream_error_is_retried_then_logged_and_the_message_kept_once(
    participant, conversation, upstream, fault, code, settings
):
    settings.LLM_FIRST_TOKEN_DEADLINE_S = 3
    upstream.script(count=10, fault=fault)
    user = send(participant, conversation, "are you there?")
    events = run_reply(user.pk)
    assert events[-1] == (
        "error",
        {"code": code, "reply": events[-1][1]["reply"], "partial": False},
    )
    reply = Message.objects.get(role="assistant")
    assert reply.status == "error" and reply.content == "" and reply.error_code == code
    assert len(upstream.requests) >= 2  # retried before the first token
    only_user_message(conversation, "are you there?")


def test_a_transient_error_before_the_first_token_is_retried_transparently(
    participant, conversation, upstream
):
    upstream.script(count=1, fault="429")
    user = send(participant, conversation, "[[reply: fine thanks]] hello")
    events = run_reply(user.pk)
    assert events[-1][0] == "done"
    reply = Message.objects.get(role="assistant")
    assert reply.status == "complete" and reply.content == "fine thanks"
    assert reply.attempts == 2


def test_a_stalled_upstream_times_out_and_is_logged(participant, conversation, upstream, settings):
    settings.LLM_READ_TIMEOUT_S = 0.5
    settings.LLM_FIRST_TOKEN_DEADLINE_S = 1.5
    upstream.script(count=10, fault="stall")
    user = send(participant, conversation, "hello?")
    events = run_reply(user.pk)
    assert events[-1][0] == "error"
    reply = Message.objects.get(role="assistant")
    assert reply.status == "error" and reply.content == ""
    only_user_message(conversation, "hello?")


def test_a_disconnect_mid_stream_keeps_the_partial_reply(participant, conversation, upstream):
    upstream.script(count=1, fault="disconnect_after: 3", tokens=10)
    user = send(participant, conversation, "tell me a story")
    events = run_reply(user.pk)
    assert events[-1][0] == "error" and events[-1][1]["partial"] is True
    reply = Message.objects.get(role="assistant")
    assert reply.status == "error" and len(reply.content.split()) == 3
    assert reply.tokens_estimated and reply.completion_tokens > 0
    assert len(upstream.requests) == 1  # never re-sent after the first token
    only_user_message(conversation, "tell me a story")


def test_missing_usage_is_estimated_and_flagged(participant, conversation, upstream):
    upstream.script(count=1, fault="no_usage")
    user = send(participant, conversation, "[[reply: a b c d]] hi")
    run_reply(user.pk)
    reply = Message.objects.get(role="assistant")
    assert reply.status == "complete" and reply.tokens_estimated
    assert reply.completion_tokens > 0


def test_a_length_limited_reply_is_marked(participant, conversation, upstream):
    upstream.script(count=1, finish="length")
    user = send(participant, conversation, "write a lot")
    run_reply(user.pk)
    assert Message.objects.get(role="assistant").status == "length"


def test_the_reported_model_is_logged_when_it_differs(participant, conversation, upstream):
    upstream.script(count=1, model="gpt-test-2099-01-01")
    run_reply(send(participant, conversation, "hi").pk)
    reply = Message.objects.get(role="assistant")
    assert reply.model_reported == "gpt-test-2099-01-01"
    assert reply.model_requested == participant.allocation.arm.model_name


def test_stop_cancels_the_stream_and_keeps_the_partial_text(participant, conversation, upstream):
    from studyplatform.chat.streaming import cancel_key
    from studyplatform.core.redis_client import redis_sync

    user = send(participant, conversation, "[[tokens: 40]] [[delay_ms: 40]] go")

    deltas = []

    async def stop_after_first(n):
        deltas.append(n)
        if len(deltas) == 2:
            redis_sync().set(cancel_key(user.pk), "1", ex=60)

    events = run_reply(user.pk, on_delta=stop_after_first)
    assert events[-1][0] == "done" and events[-1][1]["status"] == "cancelled"
    reply = Message.objects.get(role="assistant")
    assert reply.status == "cancelled" and 0 < len(reply.content.split()) < 40


def test_regenerate_keeps_both_replies_as_sibling_branches(participant, conversation, upstream):
    user = send(participant, conversation, "[[reply: first answer]] q")
    run_reply(user.pk)
    upstream.script(count=1, reply="second answer")
    run_reply(user.pk)
    replies = list(Message.objects.filter(role="assistant").order_by("id"))
    assert [r.content for r in replies] == ["first answer", "second answer"]
    assert all(r.parent == user for r in replies)
    assert Conversation.objects.get().active_leaf == replies[1]


def test_an_unclaimed_stream_never_calls_the_upstream(participant, conversation, upstream):
    user = send(participant, conversation, "hello")
    events = run_reply(user.pk, claimed=False)
    assert events == [("error", {"code": "already_answered"})]
    assert upstream.requests == []


def test_the_same_client_request_id_stores_one_message(participant, conversation):
    first = services.message_send(
        participant=participant, conversation=conversation, text="hi", client_request_id="abc"
    )
    again = services.message_send(
        participant=participant, conversation=conversation, text="hi", client_request_id="abc"
    )
    assert first.created and not again.created and first.message.pk == again.message.pk
    assert Message.objects.count() == 1


def test_limits_give_clear_errors(participant, conversation, settings):
    with pytest.raises(services.ChatError) as info:
        services.message_send(participant=participant, conversation=conversation, text="x" * 4001)
    assert info.value.code == "too_long"
    for i in range(10):
        services.message_send(participant=participant, conversation=conversation, text=f"m{i}")
    with pytest.raises(services.ChatError) as info:
        services.message_send(participant=participant, conversation=conversation, text="one more")
    assert info.value.code == "rate_limited"


def test_message_text_is_encrypted_at_rest(participant, conversation):
    send(participant, conversation, "my very private thought")
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM chat_message")
        [(raw,)] = cursor.fetchall()
    assert "private" not in raw


def test_the_moderation_endpoint_adds_alerts_the_lexicon_missed(
    participant,
    conversation,
    upstream,
    loopback_endpoint,
    settings,
    django_capture_on_commit_callbacks,
):
    from studyplatform.safety.models import SafetyAlert

    protocol = participant.study.current_version.content
    protocol["safety"]["detector"]["moderation"] = True  # the version row itself is untouched
    participant.study.current_version.content = protocol
    settings.MODERATION_ENDPOINT = loopback_endpoint
    with django_capture_on_commit_callbacks(execute=True):
        flagged = send(participant, conversation, "nobody would notice [[moderation: sh_intent]]")
        send(participant, conversation, "just a normal day")
    [alert] = SafetyAlert.objects.all()
    assert alert.message == flagged and alert.severity == "high"
    assert alert.detector == "moderation:omni-moderation-latest"
    assert alert.category == "self_harm_intent"
    assert [r["input"] for r in upstream.requests if "input" in r] == [
        "nobody would notice [[moderation: sh_intent]]",
        "just a normal day",
    ]


def test_the_participants_message_stops_pending_once_answered(participant, conversation, upstream):
    user = send(participant, conversation, "[[reply: ok]] hi")
    assert user.status == "pending"
    run_reply(user.pk)
    user.refresh_from_db()
    assert user.status == "complete"


@pytest.mark.parametrize("merges", [True, False], ids=["merging-provider", "token-per-event"])
def test_frames_are_paced_only_for_a_provider_that_merges_what_it_read(
    participant, conversation, monkeypatch, merges
):
    # given: a provider yielding five words at once, marked as merging buffered text or not
    from studyplatform.chat import streaming
    from studyplatform.chat.providers import StreamEnd, TextDelta
    from studyplatform.chat.providers.base import Provider

    class Words(Provider):
        merges_buffered_text = merges

        async def _stream(self, request):
            for word in ("one ", "two ", "three ", "four ", "five"):
                yield TextDelta(word)
            yield StreamEnd("stop", "m", None, None, 1, 5, False)

        async def check(self):  # pragma: no cover - not used here
            return None

        def _translate_error(self, exc):  # pragma: no cover - not used here
            return exc

    monkeypatch.setattr(streaming, "get_provider", lambda kind, config: Words())
    waits = []
    real_sleep = streaming.asyncio.sleep

    async def recorded_sleep(seconds, *args):
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(streaming.asyncio, "sleep", recorded_sleep)
    user = send(participant, conversation, "hello")
    # when
    events = run_reply(user.pk)
    # then: the same text either way; waits between frames only for the merging provider
    assert "".join(d["t"] for n, d in events if n == "delta") == "one two three four five"
    assert events[-1][0] == "done"
    paced = [w for w in waits if 0 < w <= streaming.FRAME_GAP_S]
    assert (len(paced) >= 4) if merges else not paced
