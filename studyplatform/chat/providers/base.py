"""The provider interface: what a chat request looks like, what a stream yields, how it fails.

Plain async Python with no Django imports, so the chat views, the launch checklist, benchmarks
and a notebook can all use the same code. A concrete provider implements ``_stream`` (raw
events from its upstream) and ``_translate_error`` (its SDK's exceptions to ``ProviderError``);
``Provider.stream`` adds what every provider must do the same way: the deadline for the first
token, and marking errors as happening before or after the first token.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

# The normalised finish reasons stored with every assistant message. "error" and "cancelled"
# are never yielded by a provider: the caller records them when a stream raises or when the
# participant goes away, so the message log uses one vocabulary for every outcome.
FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "error", "cancelled")

# Upstream-specific finish/stop reasons mapped onto FINISH_REASONS.
_FINISH_REASON_MAP = {
    # OpenAI chat completions
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    # Anthropic messages
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The usage estimator used when an upstream reports no token counts (a broken stream, or a
# server that ignores stream_options). Four characters per token is the usual rule of thumb
# for English with BPE tokenisers; it is rough (other languages and code differ), which is why
# every estimated count is flagged with usage_estimated=True rather than passed off as real.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Estimate a token count as ceil(characters / 4); 0 for empty text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_prompt_tokens(system: str | None, messages: Iterable[dict[str, Any]]) -> int:
    """Estimate prompt tokens: the system prompt and every message's content, ~4 chars/token."""
    total = estimate_tokens(system or "")
    for message in messages:
        total += estimate_tokens(str(message.get("content") or ""))
    return total


def normalise_finish_reason(raw: str | None) -> str:
    """Map an upstream finish reason onto FINISH_REASONS; unknown values count as "stop"."""
    if raw is None:
        return "stop"
    return _FINISH_REASON_MAP.get(raw, "stop")


@dataclass(frozen=True)
class Timeouts:
    """Timeouts for one request, in seconds.

    connect: opening the TCP/TLS connection. read: the longest silence between two bytes of the
    response (a stalled stream fails after this). total_deadline_before_first_token: from the
    start of the request until the first text arrives (queueing, connect, prompt processing).
    """

    connect: float = 5.0
    read: float = 60.0
    total_deadline_before_first_token: float = 60.0


@dataclass
class ChatRequest:
    """One model call: the arm's model and parameters and the conversation so far.

    messages: [{"role": "user" | "assistant", "content": str}, ...], oldest first.
    params: whatever the arm sets (temperature, top_p, max_tokens, seed, ...); each provider
    maps them onto its API (see docs/providers.md).
    """

    model: str
    messages: list[dict[str, Any]]
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timeout: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class TextDelta:
    """A piece of assistant text, in order."""

    text: str


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a successful stream.

    finish_reason is normalised (see FINISH_REASONS); raw_finish_reason is what the upstream
    said. prompt_tokens/completion_tokens come from the upstream unless usage_estimated is True.
    attempts counts the calls made (more than 1 when stream_with_retry retried).
    """

    finish_reason: str
    model_reported: str | None
    system_fingerprint: str | None
    response_id: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool
    raw_finish_reason: str | None = None
    attempts: int = 1


StreamEvent = TextDelta | StreamEnd


class ProviderError(Exception):
    """A model call failed.

    status: the HTTP status when the upstream answered with an error, else None.
    transient: worth retrying (429, 408, 5xx, connection errors, timeouts).
    before_first_token: True when no text had been yielded yet; only then may a caller retry,
    because after the first token the participant has already seen part of a reply.
    retry_after: seconds the upstream asked us to wait (Retry-After header), if any.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        transient: bool = False,
        before_first_token: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.transient = transient
        self.before_first_token = before_first_token
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.message!r}, status={self.status}, transient={self.transient}, "
            f"before_first_token={self.before_first_token})"
        )


def is_transient_status(status: int) -> bool:
    """Statuses worth retrying: rate limits, request timeouts and server-side failures."""
    return status in (408, 409, 429) or status >= 500


class Provider(ABC):
    """A model backend. Subclasses implement _stream, check and _translate_error."""

    name: str = "provider"
    is_simulated: bool = False
    # True when one TextDelta carries all the text that had arrived when it was read: the reply
    # stream may then wait between reads and frame several tokens at once (FRAME_GAP_S).
    # A provider that yields one event per token (an SDK's) must not be paced: it would fall
    # behind the model.
    merges_buffered_text: bool = False

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Yield TextDelta events then one StreamEnd; raise ProviderError on failure.

        Enforces request.timeout.total_deadline_before_first_token and sets
        ProviderError.before_first_token. Never retries (see retry.stream_with_retry).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.timeout.total_deadline_before_first_token
        events = self._stream(request)
        started = False
        try:
            while True:
                try:
                    if started:
                        event = await anext(events)
                    else:
                        # The timeout wraps only the await, never a yield, so it cannot fire
                        # while the caller is busy with an event we already handed over.
                        async with asyncio.timeout_at(deadline):
                            event = await anext(events)
                except StopAsyncIteration:
                    return
                except ProviderError as exc:
                    exc.before_first_token = not started
                    raise
                except TimeoutError as exc:
                    if not started and loop.time() >= deadline:
                        raise ProviderError(
                            "no reply within "
                            f"{request.timeout.total_deadline_before_first_token:g} s",
                            transient=True,
                        ) from exc
                    raise self._wrap(exc, started) from exc
                except Exception as exc:
                    raise self._wrap(exc, started) from exc
                if isinstance(event, TextDelta) and event.text:
                    started = True
                yield event
        finally:
            await events.aclose()

    def _wrap(self, exc: Exception, started: bool) -> ProviderError:
        error = self._translate_error(exc)
        error.before_first_token = not started
        return error

    @abstractmethod
    def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Raw events from the upstream; exceptions are translated by stream()."""

    def _translate_error(self, exc: Exception) -> ProviderError:
        """Turn an SDK/transport exception into a ProviderError. Override per SDK."""
        return ProviderError(f"{type(exc).__name__}: {exc}", transient=False)

    @abstractmethod
    async def check(self, model: str) -> str:
        """Send a tiny non-streamed test message to `model`; return the reply text.

        Used by the launch checklist ("test message to each arm's model"); raises ProviderError.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the network client this provider holds for the running event loop."""

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def collect(events: AsyncIterator[StreamEvent]) -> tuple[str, StreamEnd]:
    """Drain a stream into (full text, final event). Handy for checks, tests and notebooks."""
    parts: list[str] = []
    end: StreamEnd | None = None
    async for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            end = event
    if end is None:
        raise ProviderError("stream ended without a final event", before_first_token=not parts)
    return "".join(parts), end
