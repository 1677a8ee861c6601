"""The reply stream: forward the conversation to the arm's model and relay tokens as
Server-Sent Events, recording everything on the way.

Runs inside an async Django view under uvicorn. Database work goes through sync_to_async (one
thread per request), and is kept off the token path: one read before the upstream call, a
checkpoint every few seconds (the first one writes the reply row), one write at the end (which
also writes the row of a reply shorter than a checkpoint).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy
from redis.exceptions import RedisError

from studyplatform.core.markdown import render_markdown
from studyplatform.core.model_endpoints import EndpointUnavailable
from studyplatform.core.redis_client import redis_async
from studyplatform.core.sse import release_connection

from . import services
from .models import Message, ReplyCode
from .providers import ProviderError, StreamEnd, TextDelta, get_provider, stream_with_retry
from .speech_segments import SpokenReply

logger = logging.getLogger(__name__)

CHECKPOINT_S = 2.0
CANCEL_POLL_S = 0.25
# After a delta frame the stream waits this long before reading the model again, so what the
# model sent meanwhile leaves as one frame: 20 frames a second at most, which reads as smooth
# as one per token (a token every 10-30 ms is typical) but spends the per-frame work (the
# upstream read and parse, the frame, the server's write) once for several tokens. The first
# words are never held back: the wait follows a frame. Only for providers whose one delta
# carries everything a read found (Provider.merges_buffered_text): pacing one that yields a
# token per event would make the reply fall behind the model.
FRAME_GAP_S = 0.05
# A spoken reply's last sentence is announced only when the reply is whole (as its speech was).
SPOKEN_STATUSES = (Message.Status.COMPLETE, Message.Status.LENGTH)
# Pauses before trying the end-of-reply write again when the database refused it.
FINISH_RETRY_PAUSES_S = (0.25, 1.0)


def cancel_key(user_message_id: int) -> str:
    return f"chat:cancel:{user_message_id}"


class _StopFlag:
    """What the watcher found for one streaming reply."""

    __slots__ = ("error", "stopped")

    def __init__(self) -> None:
        self.stopped = False
        self.error: BaseException | None = None


class StopWatcher:
    """The stop flags of every reply streaming on one event loop, read with one MGET per
    CANCEL_POLL_S for all of them.

    Each stream used to GET its own flag every CANCEL_POLL_S (three round trips in a reply of
    a second, ~0.4 ms of CPU); with a few replies streaming at once, as at any busy moment,
    one MGET answers for all. A stream checks its flag on every token (two attribute reads).
    A Redis failure is handed to every watched stream, which fails as it did when it polled
    itself (recorded as internal_redis).
    """

    def __init__(self) -> None:
        self._flags: dict[_StopFlag, int] = {}  # by flag: two streams of one message may overlap
        self._task: asyncio.Task | None = None
        self._sleeping = False

    def watch(self, user_message_id: int) -> _StopFlag:
        flag = _StopFlag()
        self._flags[flag] = user_message_id
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return flag

    def unwatch(self, flag: _StopFlag) -> None:
        self._flags.pop(flag, None)
        if not self._flags and self._task is not None:
            if self._sleeping:
                # Nothing left to watch: end now rather than at the next tick, so no task
                # outlives the last stream (a loop that closes then has nothing pending).
                # Never mid-MGET: a cancelled command costs the Redis connection.
                self._task.cancel()
            self._task = None  # a task mid-MGET sees it is no longer current and ends

    async def _run(self) -> None:
        me = asyncio.current_task()
        while self._flags and self._task is me:
            self._sleeping = True
            try:
                await asyncio.sleep(CANCEL_POLL_S)
            finally:
                self._sleeping = False
            watched = list(self._flags.items())
            if not watched or self._task is not me:
                break
            try:
                values = await redis_async().mget([cancel_key(i) for _flag, i in watched])
            except Exception as exc:  # RedisError, or a bug: every stream must hear of it
                for flag, _i in watched:
                    flag.error = exc
                continue
            for (flag, _i), value in zip(watched, values, strict=True):
                if value:
                    flag.stopped = True


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StopWatcher] = (
    weakref.WeakKeyDictionary()
)


def stop_watcher() -> StopWatcher:
    """This event loop's watcher (Redis asyncio clients cannot cross loops)."""
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = StopWatcher()
    return watcher


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _db_round(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    finally:
        release_connection()


async def db_round(func, *args, **kwargs):
    """Run one piece of the stream's database work in the request's thread, then release the
    connection until the next piece."""
    return await sync_to_async(_db_round)(func, *args, **kwargs)


def _load(user_message_id: int):
    message = Message.objects.select_related(
        "conversation__arm", "participant__study__current_version"
    ).get(pk=user_message_id)
    arm = message.conversation.arm
    request = services.build_request(user_message=message, arm=arm, participant=message.participant)
    return message, arm, request, services.arm_target(arm)


def internal_code(exc: BaseException) -> str:
    """The recorded code for a failure of our own: which of our systems failed, when known."""
    if isinstance(exc, DatabaseError):
        return ReplyCode.INTERNAL_DATABASE
    if isinstance(exc, RedisError):
        return ReplyCode.INTERNAL_REDIS
    return ReplyCode.INTERNAL_BUG


def internal_error_frame(*, user_message_id: int, reply_id: int | None, partial: bool) -> str:
    """The participant-facing event for a failure on our side: retryable, with a retry link
    (regenerate). The chat page shows its own translated text for the code; `message` is for
    other clients and falls back to the request's language."""
    return sse(
        "error",
        {
            "code": "internal",
            "retryable": True,
            "reply": reply_id,
            "partial": partial,
            "message": str(INTERNAL_ERROR_TEXT),
            "retry_url": reverse("chat:regenerate", args=[user_message_id]),
        },
    )


INTERNAL_ERROR_TEXT = gettext_lazy(
    "Something went wrong on our side and the reply stopped. What arrived so far is kept; "
    "press Retry to try again."
)


async def reply_events(
    user_message_id: int,
    *,
    attempt_claimed: bool,
    prepared: tuple | None = None,
    spoken: bool = False,
) -> AsyncIterator[str]:
    """Yield SSE frames for one reply. `attempt_claimed` must be True: the caller claimed the
    user message (first send) or the participant clicked retry/regenerate. `prepared` is the
    (message, arm, request, target) the caller already loaded in its own database round; the
    target is the arm's registered endpoint, or why there is none (EndpointUnavailable).
    `spoken` (a voice turn): each finished sentence is also kept for speech and announced with
    a `speak` frame (chat/speech_segments.py).

    Every way a reply can end is recorded once, by the one reply_finish call below, with the
    outcome that is actually known (models.ReplyCode): the participant's stop click, the
    participant's connection closing, the model's failure, or ours.
    """
    if not attempt_claimed:
        yield sse("error", {"code": "already_answered"})
        return
    if prepared is None:
        try:
            prepared = await db_round(_load, user_message_id)
        except Exception:
            # Nothing was started and nothing can be recorded (the failure is what stops us
            # reading the message); the participant's message stays unanswered, with its
            # "Get a reply" button after a reload.
            logger.exception("reply to message %s could not start", user_message_id)
            yield internal_error_frame(
                user_message_id=user_message_id, reply_id=None, partial=False
            )
            return
    message, arm, request, target = prepared
    upstream_sent_at = timezone.now()
    reply = None
    parts: list[str] = []
    end: StreamEnd | None = None
    status = Message.Status.ERROR
    error_code = ""
    # Set when the ASGI server cancels us: recorded, then re-raised so the cancellation goes on.
    interrupted: BaseException | None = None
    last_checkpoint = time.monotonic()
    first_token_at = None
    watcher = stop_watcher()
    stop = watcher.watch(user_message_id)
    speaker = None
    try:
        if spoken:
            speaker = SpokenReply(
                redis_async(), participant_id=message.participant_id, user_message_id=message.pk
            )
        if isinstance(target, EndpointUnavailable):
            # No call goes out; the reply is recorded as failed like an unreachable upstream.
            raise ProviderError(str(target), transient=False)
        provider = get_provider(target.kind, target.provider_config())
        frame_gap = FRAME_GAP_S if provider.merges_buffered_text else 0.0
        yield sse("start", {"simulated": provider.is_simulated})
        async for event in stream_with_retry(
            provider, request, deadline_s=request.timeout.total_deadline_before_first_token
        ):
            if isinstance(event, TextDelta):
                first_token_at = first_token_at or timezone.now()
                parts.append(event.text)
                yield sse("delta", {"t": event.text})
                framed_at = time.monotonic()
                if speaker is not None:
                    try:
                        frames = await speaker.feed(event.text)
                    except RedisError:
                        # Speech is an extra: the reply goes on as text, unspoken from here.
                        logger.warning("sentences of reply to %s not kept", user_message_id)
                        speaker, frames = None, []
                    for frame in frames:
                        yield sse("speak", frame)
                if stop.stopped:
                    status, error_code = Message.Status.CANCELLED, ReplyCode.STOPPED
                    break
                if stop.error is not None:
                    raise stop.error
                now = time.monotonic()
                if now - last_checkpoint >= CHECKPOINT_S:
                    last_checkpoint = now
                    if reply is None:
                        # The reply row is written at its first checkpoint, with the text so
                        # far; a reply shorter than that is written once, when it ends
                        # (reply_finish), which saves the stream a database round.
                        starting = asyncio.ensure_future(
                            db_round(
                                services.reply_start,
                                user_message=message,
                                arm=arm,
                                first_token_at=first_token_at,
                                upstream_sent_at=upstream_sent_at,
                                text="".join(parts),
                            )
                        )
                        try:
                            reply = await asyncio.shield(starting)
                        except asyncio.CancelledError:
                            # The participant left while the row was being written (in a
                            # worker thread, which a cancellation does not stop). Without its
                            # id the cancellation below would record a second reply and leave
                            # this one `streaming` forever; wait for it, then go on cancelling.
                            reply = await starting
                            raise
                        yield sse("reply", {"id": reply.pk})
                    else:
                        await db_round(services.reply_checkpoint, reply, "".join(parts))
                pause = framed_at + frame_gap - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
            elif isinstance(event, StreamEnd):
                end = event
                status = services.FINISH_TO_STATUS.get(event.finish_reason, Message.Status.COMPLETE)
    except ProviderError as exc:
        status, error_code = Message.Status.ERROR, ReplyCode.upstream(exc.status)
    except (asyncio.CancelledError, GeneratorExit) as exc:
        # The server cancels the response task when the participant closes the page or loses
        # the connection (CancelledError), or closes this generator when the send fails
        # (GeneratorExit). Only these are the participant's doing.
        status, error_code = Message.Status.CANCELLED, ReplyCode.DISCONNECTED
        interrupted = exc
    except Exception as exc:
        # Our own failure (database, Redis, a bug): never filed as the participant's choice.
        logger.exception("reply to message %s failed on our side", user_message_id)
        status, error_code = Message.Status.ERROR, internal_code(exc)
    finally:
        watcher.unwatch(stop)
    finished = None
    for attempt, pause in enumerate((*FINISH_RETRY_PAUSES_S, None)):
        try:
            finished = await db_round(
                services.reply_finish,
                reply=reply,
                user_message=message,
                arm=arm,
                text="".join(parts),
                end=end,
                status=status,
                upstream_sent_at=upstream_sent_at,
                first_token_at=first_token_at,
                error_code=error_code,
                attempts=end.attempts if end else 1,
                retrying=attempt > 0,
            )
            break
        except DatabaseError as exc:
            # The participant has the words; the log must get them too. A database that is
            # restarting or briefly locked comes back within seconds, and the stream is still
            # open, so the write is tried again (reply_finish(retrying=True) finds a row an
            # earlier attempt did commit, so the reply is never recorded twice).
            if pause is not None:
                logger.warning(
                    "recording the reply to message %s failed; retrying", user_message_id
                )
                await asyncio.sleep(pause)
                continue
            failure: Exception = exc
        except Exception as exc:
            failure = exc  # a bug: trying again would fail the same way
        # Not recorded: the row keeps its last checkpoint (status streaming) for the stale-reply
        # sweep, and the participant is told it failed on our side.
        logger.error(
            "reply to message %s could not be recorded",
            user_message_id,
            exc_info=(type(failure), failure, failure.__traceback__),
        )
        if interrupted is None:
            status, error_code = Message.Status.ERROR, internal_code(failure)
        break
    if interrupted is not None:
        raise interrupted
    try:
        await redis_async().delete(cancel_key(user_message_id))
    except RedisError:
        # A leftover stop flag (only if Stop was clicked and the flag outlives the outage)
        # expires by itself with stream_stop's TTL; until then a retry of this message stops
        # at its first poll, which the participant can simply retry again.
        logger.warning("could not clear the stop flag of message %s", user_message_id)
    reply_id = finished.pk if finished is not None else (reply.pk if reply else None)
    if error_code in ReplyCode.INTERNAL:
        yield internal_error_frame(
            user_message_id=user_message_id, reply_id=reply_id, partial=bool(parts)
        )
    elif status == Message.Status.ERROR:
        yield sse("error", {"code": error_code, "reply": reply_id, "partial": bool(parts)})
    else:
        if speaker is not None and status in SPOKEN_STATUSES:
            try:
                for frame in await speaker.finish(finished.pk if finished else None):
                    yield sse("speak", frame)
            except RedisError:
                # The text is complete on screen; its last sentence stays unspoken.
                logger.warning("last sentence of reply to message %s not kept", user_message_id)
        yield sse(
            "done",
            {
                "reply": finished.pk,
                "status": status,
                "html": str(render_markdown(finished.content)),
            },
        )
