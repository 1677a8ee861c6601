"""Chat under faults: every way a reply ends is recorded once with its own outcome code, and a
send during a Redis or database outage answers JSON saying whether the message was stored.

The faults are real where the brief asks for it: a throwaway redis-server (never the shared
test one) is killed mid-stream and during a send, and the database refuses a write because
another connection holds a lock on the message table.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection

from studyplatform.chat import services
from studyplatform.chat.models import Message
from studyplatform.participants.session import SESSION_KEY
from tests.chat.conftest import parse_sse, run_reply

pytestmark = pytest.mark.django_db

SLOW_STORY = "[[tokens: 40]] [[delay_ms: 40]] tell me a story"


@pytest.fixture
def participant(chat_study, enroll):
    return enroll(chat_study)


@pytest.fixture
def conversation(participant):
    return services.conversation_create(participant=participant)


@pytest.fixture
def finish_calls(monkeypatch):
    """Count reply_finish calls (the real function still runs)."""
    calls = []
    real = services.reply_finish

    def counting(**kwargs):
        calls.append(kwargs["status"])
        return real(**kwargs)

    monkeypatch.setattr(services, "reply_finish", counting)
    return calls


def send(participant, conversation, text):
    return services.message_send(
        participant=participant, conversation=conversation, text=text
    ).message


def the_reply():
    return Message.objects.get(role=Message.Role.ASSISTANT)


# --- one recorded outcome per path, one reply_finish per reply ------------------------------


def test_a_complete_reply_is_finished_once(participant, conversation, upstream, finish_calls):
    events = run_reply(send(participant, conversation, "[[reply: hi there]] hi").pk)
    assert events[-1][0] == "done"
    assert finish_calls == ["complete"]
    assert (the_reply().status, the_reply().error_code) == ("complete", "")


def test_a_stop_click_is_recorded_as_stopped_once(
    participant, conversation, upstream, finish_calls
):
    from studyplatform.chat.streaming import cancel_key
    from studyplatform.core.redis_client import redis_sync

    user = send(participant, conversation, SLOW_STORY)

    async def stop_at_second_delta(n):
        if n >= 3:
            redis_sync().set(cancel_key(user.pk), "1", ex=60)

    events = run_reply(user.pk, on_delta=stop_at_second_delta)
    assert events[-1][0] == "done" and events[-1][1]["status"] == "cancelled"
    assert finish_calls == ["cancelled"]
    assert (the_reply().status, the_reply().error_code) == ("cancelled", "stopped")


def test_an_upstream_error_is_recorded_as_upstream_once(
    participant, conversation, upstream, finish_calls, settings
):
    settings.LLM_FIRST_TOKEN_DEADLINE_S = 3
    upstream.script(count=10, fault="500")
    events = run_reply(send(participant, conversation, "hello?").pk)
    assert events[-1][0] == "error" and events[-1][1]["code"] == "upstream_500"
    assert "retry_url" not in events[-1][1]  # the page reloads and offers its own Retry
    assert finish_calls == ["error"]
    assert (the_reply().status, the_reply().error_code) == ("error", "upstream_500")


def test_a_bug_in_our_code_is_recorded_as_internal_not_as_a_disconnect(
    participant, conversation, upstream, finish_calls, monkeypatch
):
    # given: saving the checkpoint raises (a bug of ours), after some text arrived
    def broken_checkpoint(reply, text):
        raise RuntimeError("bug")

    monkeypatch.setattr(services, "reply_checkpoint", broken_checkpoint)
    monkeypatch.setattr("studyplatform.chat.streaming.CHECKPOINT_S", 0.0)
    user = send(participant, conversation, SLOW_STORY)
    # when
    events = run_reply(user.pk)
    # then: recorded once as our failure, the partial text kept, the client told to retry
    assert finish_calls == ["error"]
    reply = the_reply()
    assert (reply.status, reply.error_code) == ("error", "internal_bug")
    assert reply.content
    name, data = events[-1]
    assert name == "error"
    assert data["code"] == "internal" and data["retryable"] is True
    assert data["partial"] is True and data["reply"] == reply.pk
    assert data["retry_url"] == f"/p/chat/m/{user.pk}/regenerate/"


def test_an_unrecordable_finish_is_retried_then_still_tells_the_client(
    participant, conversation, upstream, monkeypatch
):
    calls = []

    def failing_finish(**kwargs):
        calls.append((kwargs["status"], kwargs["retrying"]))
        from django.db import OperationalError

        raise OperationalError("database is locked")

    monkeypatch.setattr(services, "reply_finish", failing_finish)
    monkeypatch.setattr("studyplatform.chat.streaming.FINISH_RETRY_PAUSES_S", (0.0, 0.0))
    events = run_reply(send(participant, conversation, "[[reply: ok]] hi").pk)
    # three attempts (the later ones told they retry), then the participant is told
    assert calls == [("complete", False), ("complete", True), ("complete", True)]
    assert events[-1][0] == "error" and events[-1][1]["code"] == "internal"


def test_a_bug_in_the_finish_is_not_retried(participant, conversation, upstream, monkeypatch):
    calls = []

    def buggy_finish(**kwargs):
        calls.append(kwargs["status"])
        raise RuntimeError("bug")

    monkeypatch.setattr(services, "reply_finish", buggy_finish)
    events = run_reply(send(participant, conversation, "[[reply: ok]] hi").pk)
    assert calls == ["complete"]
    assert events[-1][1]["code"] == "internal"


# --- the database fails after the upstream call has started ---------------------------------


@pytest.fixture
def failing_writes(monkeypatch):
    """Make the database refuse chat writes (INSERT/UPDATE of chat tables) while `on` is set:
    at the statement level, whatever SQL the recording code uses."""
    from django.db import OperationalError

    switch = {"on": False, "refused": 0, "budget": None}

    def wrapper(execute, sql, params, many, context):
        writing = sql.lstrip().upper().startswith(("INSERT", "UPDATE", "WITH"))
        budget_left = switch["budget"] is None or switch["budget"] > 0
        if switch["on"] and writing and '"chat_' in sql and budget_left:
            if switch["budget"] is not None:
                switch["budget"] -= 1
            switch["refused"] += 1
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    monkeypatch.setattr("studyplatform.chat.streaming.FINISH_RETRY_PAUSES_S", (0.0, 0.0))
    with connection.execute_wrapper(wrapper):
        yield switch


def test_a_finish_write_failing_once_mid_reply_still_records_every_token(
    participant, conversation, upstream, failing_writes
):
    # given: a reply whose tokens reach the participant, then the database refuses the one
    # write that records them (a restart, a lock timeout) - and comes back a moment later
    user = send(participant, conversation, "[[reply: one two three four]] hi")
    failing_writes["on"], failing_writes["budget"] = True, 1
    # when
    events = run_reply(user.pk)
    # then: the participant got the words and a normal end, and the log holds all of them once
    assert failing_writes["refused"] == 1
    shown = "".join(data["t"] for name, data in events if name == "delta")
    assert shown == "one two three four"
    assert events[-1][0] == "done"
    reply = the_reply()
    assert (reply.content, reply.status) == (shown, "complete")
    user.refresh_from_db()
    conversation.refresh_from_db()
    assert user.status == "complete" and conversation.active_leaf_id == reply.pk


# Outside a test transaction, as in production: a refused write inside one would poison it.
@pytest.mark.django_db(transaction=True)
def test_a_database_down_for_the_rest_of_the_reply_tells_the_participant_and_keeps_the_checkpoint(
    participant, conversation, upstream, failing_writes, monkeypatch
):
    # given: the reply row is written at its first checkpoint (here the first token), then
    # the database refuses every write while the tokens go on flowing
    monkeypatch.setattr("studyplatform.chat.streaming.CHECKPOINT_S", 0.0)
    user = send(participant, conversation, SLOW_STORY)

    deltas = []

    async def database_goes_down(frames_so_far):
        # From the second word on: the row was written at the first one.
        deltas.append(frames_so_far)
        failing_writes["on"] = len(deltas) >= 2

    # when
    events = run_reply(user.pk, on_delta=database_goes_down)
    # then: no exception reached the server (no 500); the participant is told, retryably,
    # and the reply row it was shown keeps the text of its checkpoint for the stale sweep
    name, data = events[-1]
    assert name == "error" and data["code"] == "internal" and data["retryable"] is True
    assert data["partial"] is True
    reply = the_reply()
    assert data["reply"] == reply.pk
    assert reply.status == "streaming" and reply.content
    shown = "".join(d["t"] for n, d in events if n == "delta")
    assert shown.startswith(reply.content)
    # and once the database is back, the sweep finalises it with that text
    failing_writes["on"] = False
    from datetime import timedelta

    from django.utils import timezone

    assert services.stale_replies_finish(now=timezone.now() + timedelta(hours=1)) == 1
    reply.refresh_from_db()
    assert (reply.status, reply.error_code) == ("error", "internal_interrupted")
    assert reply.content and shown.startswith(reply.content)


def _drive_then_disconnect(user_message_id: int, how: str) -> list[str]:
    """Run the reply as the ASGI server does and disconnect after the first words: the server
    cancels the response task (`cancel`) or closes the body iterator (`close`)."""
    from studyplatform.chat.streaming import reply_events

    async def go():
        frames: list[str] = []
        events = reply_events(user_message_id, attempt_claimed=True)
        if how == "close":
            async for frame in events:
                frames.append(frame)
                if frame.startswith("event: delta"):
                    break
            await events.aclose()
            return frames
        started = asyncio.Event()

        async def consume():
            async for frame in events:
                frames.append(frame)
                if frame.startswith("event: delta"):
                    started.set()

        task = asyncio.ensure_future(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return frames

    return async_to_sync(go)()


@pytest.mark.parametrize("how", ["cancel", "close"])
def test_a_participant_disconnect_is_recorded_as_disconnected_once(
    participant, conversation, upstream, finish_calls, how
):
    user = send(participant, conversation, SLOW_STORY)
    frames = _drive_then_disconnect(user.pk, how)
    assert not any(f.startswith("event: error") or f.startswith("event: done") for f in frames)
    assert finish_calls == ["cancelled"]
    reply = the_reply()
    assert (reply.status, reply.error_code) == ("cancelled", "disconnected")
    assert 0 < len(reply.content.split()) < 40


def test_a_disconnect_while_the_reply_row_is_being_written_records_that_row_once(
    participant, conversation, upstream, finish_calls, monkeypatch
):
    # given: writing the reply row at its first checkpoint is slow (a busy database)
    import threading

    real_start = services.reply_start
    writing = threading.Event()

    def slow_start(**kwargs):
        writing.set()
        import time

        time.sleep(0.5)
        return real_start(**kwargs)

    monkeypatch.setattr(services, "reply_start", slow_start)
    # (the row is written at the first checkpoint: here at the first token)
    monkeypatch.setattr("studyplatform.chat.streaming.CHECKPOINT_S", 0.0)
    user = send(participant, conversation, SLOW_STORY)
    from studyplatform.chat.streaming import reply_events

    # when: the server cancels the response while that row is being written (the soak found
    # this: the participant's connection dropped right after the first words)
    async def go():
        async def consume():
            async for _frame in reply_events(user.pk, attempt_claimed=True):
                pass

        task = asyncio.ensure_future(consume())
        while not writing.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async_to_sync(go)()
    # then: one reply row, the one written at the checkpoint, recorded as disconnected
    assert finish_calls == ["cancelled"]
    reply = the_reply()
    assert (reply.status, reply.error_code) == ("cancelled", "disconnected")
    assert not Message.objects.filter(status=Message.Status.STREAMING).exists()


# --- Redis dies (a real redis-server, killed) ----------------------------------------------


def test_redis_dying_mid_stream_is_recorded_as_internal_and_the_client_gets_a_retry(
    participant, conversation, upstream, finish_calls, throwaway_redis
):
    # given: a reply streaming slowly, polling Redis for the stop flag
    user = send(participant, conversation, SLOW_STORY)

    async def kill_redis_after_a_few_words(n):
        if n == 4:
            throwaway_redis["kill"]()

    # when: the redis-server is killed mid-reply
    events = run_reply(user.pk, on_delta=kill_redis_after_a_few_words)
    # then: recorded once as our Redis failure, never as the participant leaving
    assert finish_calls == ["error"]
    reply = the_reply()
    assert (reply.status, reply.error_code) == ("error", "internal_redis")
    assert 0 < len(reply.content.split()) < 40  # the words that arrived are kept
    name, data = events[-1]
    assert name == "error" and data["code"] == "internal" and data["retryable"] is True
    assert data["partial"] is True and data["reply"] == reply.pk
    assert [m.content for m in Message.objects.filter(role="user")] == [SLOW_STORY]


def login(client, participant):
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def post_reply(client, conversation, payload):
    return client.post(
        f"/p/chat/c/{conversation.pk}/reply/", json.dumps(payload), content_type="application/json"
    )


def consume(response) -> list:
    async def read():
        return [
            chunk.decode() if isinstance(chunk, bytes) else chunk
            async for chunk in response.streaming_content
        ]

    return parse_sse(async_to_sync(read)())


def test_a_send_while_redis_is_down_is_a_json_503_not_stored_and_the_retry_stores_once(
    client, participant, conversation, upstream, throwaway_redis
):
    login(client, participant)
    payload = {"text": "[[reply: back again]] are you there?", "client_request_id": "click-1"}
    # given: Redis is down
    throwaway_redis["kill"]()
    # when: the participant sends
    response = post_reply(client, conversation, payload)
    # then: a JSON 503 saying the message was not stored; nothing written
    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["retryable"] is True and body["stored"] is False
    assert "not sent" in body["error"]
    assert not Message.objects.exists()
    # when: Redis is back and the script retries with the same client id
    throwaway_redis["restart"]()
    events = consume(post_reply(client, conversation, payload))
    again = post_reply(client, conversation, payload)
    # then: stored once, answered once
    assert events[0][0] == "message" and events[-1][0] == "done"
    assert again.status_code == 200 and again.json()["message"]["text"] == payload["text"]
    assert Message.objects.filter(role="user").count() == 1
    assert Message.objects.filter(role="assistant").count() == 1


def test_stop_while_redis_is_down_is_a_json_503(client, participant, conversation, throwaway_redis):
    login(client, participant)
    user = send(participant, conversation, "hello")
    throwaway_redis["kill"]()
    response = client.post(f"/p/chat/stream/{user.pk}/stop/")
    assert response.status_code == 503 and response.json()["retryable"] is True
    assert "stored" not in response.json()


def test_a_send_whose_reply_cannot_start_says_the_message_was_stored(
    client, participant, conversation, upstream, monkeypatch
):
    # given: the message commits, then preparing the model request hits the database outage
    from django.db import OperationalError

    def unavailable(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    login(client, participant)
    monkeypatch.setattr(services, "build_request", unavailable)
    payload = {"text": "[[reply: hi]] hello", "client_request_id": "click-2"}
    response = post_reply(client, conversation, payload)
    # then: 503, stored, with the message and where to ask for its reply
    assert response.status_code == 503
    body = response.json()
    stored = Message.objects.get(role="user")
    assert body["stored"] is True and body["message"] == {
        "id": stored.pk,
        "text": "[[reply: hi]] hello",
    }
    assert body["retry_url"] == f"/p/chat/m/{stored.pk}/regenerate/"
    # and the retry with the same id stores nothing new
    monkeypatch.undo()
    assert post_reply(client, conversation, payload).status_code == 200
    assert Message.objects.filter(role="user").count() == 1


# --- the database refuses the write (another connection holds the lock) ---------------------


def _hold_message_table_lock():
    """Another connection takes the write lock the send needs and keeps it (the release
    callable gives it back). Real database errors, not a patched driver."""
    if connection.vendor == "postgresql":
        import psycopg

        settings_dict = connection.settings_dict
        other = psycopg.connect(
            host=settings_dict["HOST"],
            port=settings_dict["PORT"] or 5432,
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"],
            dbname=settings_dict["NAME"],
        )
        # EXCLUSIVE blocks every write to chat_message and still lets it be read.
        other.execute("LOCK TABLE chat_message IN EXCLUSIVE MODE")
        # This test's connection gives up waiting quickly (a production outage: the pool's
        # or statement timeout; the error class is the same).
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")

        def release():
            other.rollback()
            other.close()

        return release
    import sqlite3

    # The test database is an in-memory, shared-cache SQLite database; a second connection to
    # it that holds an exclusive transaction makes every other writer fail with "locked".
    name = connection.settings_dict["NAME"]
    other = sqlite3.connect(name, uri=True, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")

    def release():
        other.execute("ROLLBACK")
        other.close()

    return release


# SQLite: this test's own open transaction would hold the write lock the other connection
# needs, so it commits as it goes. PostgreSQL: the lock is table-level and the test keeps its
# transaction, where the lock timeout set on its connection survives between rounds.
ON_SQLITE = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")


@pytest.mark.django_db(transaction=ON_SQLITE)
def test_a_send_while_the_database_refuses_writes_is_a_json_503_and_the_retry_stores_once(
    client, chat_study, enroll, upstream
):
    participant = enroll(chat_study)
    conversation = services.conversation_create(participant=participant)
    login(client, participant)
    payload = {"text": "[[reply: here]] still there?", "client_request_id": "click-3"}
    # given: the message table is locked by another connection
    release = _hold_message_table_lock()
    try:
        # when
        response = post_reply(client, conversation, payload)
    finally:
        release()
    # then: a clear JSON error, nothing stored
    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["stored"] is False and body["retryable"] is True
    assert not Message.objects.filter(role="user").exists()
    # when: the lock is gone and the script retries with the same id
    events = consume(post_reply(client, conversation, payload))
    # then: stored once, answered
    assert events[-1][0] == "done"
    assert [m.content for m in Message.objects.filter(role="user")] == [payload["text"]]


def test_the_failure_texts_are_translated_for_a_portuguese_participant(
    client, chat_study, enroll, throwaway_redis
):
    participant = enroll(chat_study, language="pt-br")
    conversation = services.conversation_create(participant=participant)
    login(client, participant)
    client.cookies["django_language"] = "pt-br"
    page = client.get(f"/p/chat/c/{conversation.pk}/").content.decode()
    assert "Algo deu errado do nosso lado e a resposta parou." in page
    throwaway_redis["kill"]()
    response = post_reply(client, conversation, {"text": "oi", "client_request_id": "pt-1"})
    assert response.status_code == 503
    assert response.json()["error"].startswith("O servidor do estudo está com um problema")


# --- through the real ASGI server (uvicorn) and a real HTTP connection ---------------------


@pytest.fixture
def live_asgi(transactional_db):
    """The ASGI app under uvicorn in a thread, so a test can drop a real connection and read a
    real event stream. Data must be committed (transactional_db)."""
    import socket
    import threading
    import time

    import uvicorn

    from studyplatform.core.sse import get_asgi_application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            get_asgi_application(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _stream_link(user_message) -> str:
    from studyplatform.chat.views import _stream_url

    return _stream_url(user_message)


def _wait_for_final_status(deadline_s: float = 15.0) -> Message:
    import time

    from django.db import connection

    # On SQLite the in-memory test database is shared between this thread and the server's
    # through SQLite's shared cache, where a reader's table lock makes the server's concurrent
    # write fail at once ("database table is locked"), so polling could itself break the reply
    # it waits for. read_uncommitted readers take no table lock. (The platform runs a file
    # database in WAL mode, without shared cache: there readers never block writers.)
    sqlite = connection.vendor == "sqlite"
    if sqlite:
        connection.cursor().execute("PRAGMA read_uncommitted = 1")
    try:
        deadline = time.monotonic() + deadline_s
        while True:
            reply = Message.objects.filter(role=Message.Role.ASSISTANT).first()
            if reply is not None and reply.status != Message.Status.STREAMING:
                return reply
            assert time.monotonic() < deadline, "the reply was never finalised"
            time.sleep(0.1)
    finally:
        if sqlite:
            connection.cursor().execute("PRAGMA read_uncommitted = 0")


def test_closing_the_connection_mid_reply_is_recorded_as_disconnected(
    live_asgi, chat_study, enroll, upstream
):
    import httpx

    participant = enroll(chat_study)
    conversation = services.conversation_create(participant=participant)
    user = send(participant, conversation, SLOW_STORY)
    # when: the participant's browser reads the first words, then the connection drops
    with httpx.stream("GET", live_asgi + _stream_link(user), timeout=20) as response:
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line.startswith("event: delta"):
                break
    # then: the server's cancellation is recorded as the participant leaving, nothing else
    reply = _wait_for_final_status()
    assert (reply.status, reply.error_code) == ("cancelled", "disconnected")
    assert 0 < len(reply.content.split()) < 40


def test_redis_dying_mid_reply_reaches_the_client_as_a_retryable_error_event(
    live_asgi, chat_study, enroll, upstream, throwaway_redis
):
    import httpx

    participant = enroll(chat_study)
    conversation = services.conversation_create(participant=participant)
    user = send(participant, conversation, SLOW_STORY)
    frames, deltas = [], 0
    with httpx.stream("GET", live_asgi + _stream_link(user), timeout=20) as response:
        for frame in response.iter_text():
            frames.append(frame)
            deltas += frame.count("event: delta")
            if deltas >= 3 and throwaway_redis["proc"].poll() is None:
                throwaway_redis["kill"]()  # mid-reply, while the client is reading
    events = parse_sse([f for f in "".join(frames).split("\n\n") if f.strip()])
    reply = _wait_for_final_status()
    assert (reply.status, reply.error_code) == ("error", "internal_redis")
    name, data = events[-1]
    assert name == "error" and data["code"] == "internal" and data["retryable"] is True
    assert data["reply"] == reply.pk and data["partial"] is True
    assert data["retry_url"] == f"/p/chat/m/{user.pk}/regenerate/"


@pytest.mark.django_db(transaction=True)
def test_a_round_releases_a_pooled_connection_but_keeps_sqlites(monkeypatch):
    # given: a database round outside any atomic block, as in production
    from studyplatform.chat.streaming import _db_round

    assert not connection.in_atomic_block
    closed = []
    real_close = connection.close
    monkeypatch.setattr(connection, "close", lambda: closed.append(1) or real_close())
    # when: the round ends
    _db_round(lambda: Message.objects.exists())
    # then: PostgreSQL's connection went back to the pool (a long reply must not hold one);
    # SQLite's stays open (it holds no server slot, and reopening it costs every round)
    assert closed == ([] if connection.vendor == "sqlite" else [1])
