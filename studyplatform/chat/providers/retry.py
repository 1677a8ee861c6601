"""Retrying a model call, only where it is safe: before the participant has seen any text.

A transient failure (429, 5xx, connection error, timeout) before the first token is retried
with exponential backoff and jitter, as long as the next attempt can start before the overall
deadline. Once a token has been yielded a failure propagates unchanged (before_first_token is
False): the caller keeps and finalises the partial text, because re-asking the model would
produce a different reply after part of one was already shown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable

from .base import ChatRequest, Provider, ProviderError, StreamEnd, StreamEvent, TextDelta

# Sleep function type, injectable so callers can observe or shorten the backoff.
Sleep = Callable[[float], Awaitable[None]]


def backoff_delay(attempt: int, base_delay_s: float, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1-based): base * 2**(attempt-1), jittered.

    "Equal jitter": half the exponential step is fixed and half random, so retries from many
    conversations hitting the same rate limit spread out, yet never retry immediately.
    """
    step = base_delay_s * (2 ** (attempt - 1))
    return step / 2 + (rng or random).uniform(0, step / 2)


async def stream_with_retry(
    provider: Provider,
    request: ChatRequest,
    *,
    deadline_s: float,
    base_delay_s: float = 0.5,
    max_attempts: int = 3,
    rng: random.Random | None = None,
    sleep: Sleep = asyncio.sleep,
) -> AsyncIterator[StreamEvent]:
    """Like provider.stream(request), retrying transient failures before the first token.

    deadline_s bounds the whole pre-first-token phase across attempts: each attempt's
    first-token deadline is cut to what remains, and no retry starts if its backoff would end
    past the deadline. max_attempts counts the first call. The final StreamEnd reports how many
    attempts were made. Raises the last ProviderError when giving up.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise ProviderError(f"no reply within {deadline_s:g} s", transient=True)
        timeout = dataclasses.replace(
            request.timeout,
            total_deadline_before_first_token=min(
                request.timeout.total_deadline_before_first_token, remaining
            ),
        )
        attempt_request = dataclasses.replace(request, timeout=timeout)
        yielded_text = False
        try:
            async for event in provider.stream(attempt_request):
                if isinstance(event, TextDelta):
                    yielded_text = True
                elif isinstance(event, StreamEnd):
                    event = dataclasses.replace(event, attempts=attempt)
                yield event
            return
        except ProviderError as error:
            if yielded_text or not error.before_first_token:
                error.before_first_token = False
                raise
            if not error.transient or attempt >= max_attempts:
                raise
            delay = backoff_delay(attempt, base_delay_s, rng)
            if error.retry_after is not None:
                delay = max(delay, error.retry_after)
            if loop.time() + delay >= deadline:
                raise
            await sleep(delay)
