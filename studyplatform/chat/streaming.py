"""The reply stream: forward the conversation to the arm's model and relay tokens as
Server-Sent Events, recording everything on the way.

Runs inside an async Django view under uvicorn. Database work goes through sync_to_async (one
thread per request), and is kept off the token path: one read before the upstream call, one
write at the first token, a checkpoint every few seconds, one write at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from studyplatform.core.markdown import render_markdown
from studyplatform.core.model_endpoints import EndpointUnavailable
from studyplatform.core.redis_client import redis_async

from . import services
from .models import Message
from .providers import ProviderError, StreamEnd, TextDelta, get_provider, stream_with_retry

CHECKPOINT_S = 2.0
CANCEL_POLL_S = 0.25


def cancel_key(user_message_id: int) -> str:
    return f"chat:cancel:{user_message_id}"


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _release_connection() -> None:
    """Give this thread's database connection back (to the pool, on PostgreSQL).

    Django would release it only when the response ends, and a reply streams for seconds: with
    a pool of 20, the 21st concurrent stream would wait for someone else's reply to finish.
    Inside an atomic block (tests run in one) the connection is left alone.
    """
    if not connection.in_atomic_block:
        connection.close()


def _db_round(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    finally:
        _release_connection()


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


async def reply_events(
    user_message_id: int, *, attempt_claimed: bool, prepared: tuple | None = None
) -> AsyncIterator[str]:
    """Yield SSE frames for one reply. `attempt_claimed` must be True: the caller claimed the
    user message (first send) or the participant clicked retry/regenerate. `prepared` is the
    (message, arm, request, target) the caller already loaded in its own database round; the
    target is the arm's registered endpoint, or why there is none (EndpointUnavailable)."""
    if not attempt_claimed:
        yield sse("error", {"code": "already_answered"})
        return
    if prepared is None:
        prepared = await db_round(_load, user_message_id)
    message, arm, request, target = prepared
    redis = redis_async()
    upstream_sent_at = timezone.now()
    reply = None
    parts: list[str] = []
    end: StreamEnd | None = None
    status = Message.Status.ERROR
    error_code = ""
    last_checkpoint = last_poll = time.monotonic()
    first_token_at = None
    try:
        if isinstance(target, EndpointUnavailable):
            # No call goes out; the reply is recorded as failed like an unreachable upstream.
            raise ProviderError(str(target), transient=False)
        provider = get_provider(target.kind, target.provider_config())
        yield sse("start", {"simulated": provider.is_simulated})
        async for event in stream_with_retry(
            provider, request, deadline_s=request.timeout.total_deadline_before_first_token
        ):
            if isinstance(event, TextDelta):
                first_token_at = first_token_at or timezone.now()
                parts.append(event.text)
                # The participant sees the first words before the reply row is written.
                yield sse("delta", {"t": event.text})
                if reply is None:
                    reply = await db_round(
                        services.reply_start,
                        user_message=message,
                        arm=arm,
                        first_token_at=first_token_at,
                        upstream_sent_at=upstream_sent_at,
                    )
                    yield sse("reply", {"id": reply.pk})
                now = time.monotonic()
                if now - last_poll >= CANCEL_POLL_S:
                    last_poll = now
                    if await redis.get(cancel_key(user_message_id)):
                        status, error_code = Message.Status.CANCELLED, "stopped"
                        break
                if now - last_checkpoint >= CHECKPOINT_S:
                    last_checkpoint = now
                    await db_round(services.reply_checkpoint, reply, "".join(parts))
            elif isinstance(event, StreamEnd):
                end = event
                status = services.FINISH_TO_STATUS.get(event.finish_reason, Message.Status.COMPLETE)
    except ProviderError as exc:
        status = Message.Status.ERROR
        error_code = f"upstream_{exc.status}" if exc.status else "upstream_unreachable"
    except BaseException:
        # The participant closed the page (the server cancels this generator) or the worker is
        # shutting down: keep what arrived, marked cancelled, then let the cancellation proceed.
        status, error_code = Message.Status.CANCELLED, "disconnected"
        await db_round(
            services.reply_finish,
            reply=reply,
            user_message=message,
            arm=arm,
            text="".join(parts),
            end=end,
            status=status,
            upstream_sent_at=upstream_sent_at,
            error_code=error_code,
            attempts=end.attempts if end else 1,
        )
        raise
    finished = await db_round(
        services.reply_finish,
        reply=reply,
        user_message=message,
        arm=arm,
        text="".join(parts),
        end=end,
        status=status,
        upstream_sent_at=upstream_sent_at,
        error_code=error_code,
        attempts=end.attempts if end else 1,
    )
    await redis.delete(cancel_key(user_message_id))
    if status == Message.Status.ERROR:
        yield sse("error", {"code": error_code, "reply": finished.pk, "partial": bool(parts)})
    else:
        yield sse(
            "done",
            {
                "reply": finished.pk,
                "status": status,
                "html": str(render_markdown(finished.content)),
            },
        )
