"""OpenAI-compatible chat completions through the official ``openai`` SDK (AsyncOpenAI).

One provider covers OpenAI, Azure-style gateways, OpenRouter, vLLM, Ollama and llama.cpp: only
the base URL and the key's environment variable change. Streams with
``stream_options={"include_usage": True}`` so the upstream's own token counts are recorded;
when a server sends none, counts are estimated and flagged (base.estimate_tokens).

The SDK's own retries are disabled (max_retries=0): retrying is the caller's decision
(retry.stream_with_retry), because a retry after the first token would show a participant two
different replies.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai

from .base import (
    ChatRequest,
    Provider,
    ProviderError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Timeouts,
    estimate_prompt_tokens,
    estimate_tokens,
    is_transient_status,
    normalise_finish_reason,
)
from .config import ProviderConfig, resolve_api_key

OPENAI_BASE_URL = "https://api.openai.com/v1"

# Request fields the provider sets itself; an arm's params must not override them.
_RESERVED_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "n"})

CHECK_PROMPT = "This is a connection test. Reply with the single word OK."


def sdk_timeout(timeouts: Timeouts) -> httpx2.Timeout:
    """The SDK's timeout object (the SDK is built on httpx2, not httpx) for these Timeouts."""
    # write and pool share the read budget: a request body is small, and waiting for a pooled
    # connection is part of "the upstream is slow".
    return httpx2.Timeout(timeouts.read, connect=timeouts.connect)


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP-date Retry-After; the backoff schedule applies instead


def translate_sdk_error(exc: Exception, sdk: Any) -> ProviderError:
    """Map exceptions of the openai or anthropic SDK (same class names) to ProviderError."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        return ProviderError(
            f"upstream returned HTTP {status}: {exc.message}",
            status=status,
            transient=is_transient_status(status),
            retry_after=_retry_after(getattr(exc.response, "headers", None)),
        )
    # Transport failures arrive wrapped by the SDK (APITimeoutError, APIConnectionError) or,
    # from some stream readers, as the raw httpx2 exception; both are handled alike.
    cause = exc.__cause__ if isinstance(exc, sdk.APIConnectionError) else exc
    if isinstance(exc, sdk.APITimeoutError) or isinstance(cause, httpx2.TimeoutException):
        phase = "connect" if isinstance(cause, httpx2.ConnectTimeout) else "read"
        return ProviderError(f"upstream {phase} timeout", transient=True)
    if isinstance(exc, (sdk.APIConnectionError, httpx2.TransportError)):
        if isinstance(cause, httpx2.RemoteProtocolError):
            return ProviderError(f"upstream closed the stream early: {cause}", transient=True)
        return ProviderError(f"connection to upstream failed: {cause!r}", transient=True)
    if isinstance(exc, sdk.APIError):
        # An error object inside an otherwise healthy stream: the server failed mid-reply.
        return ProviderError(f"upstream error in stream: {exc.message}", transient=True)
    return ProviderError(f"{type(exc).__name__}: {exc}", transient=False)


class OpenAICompatProvider(Provider):
    """Streams chat completions from any OpenAI-compatible endpoint."""

    name = "openai"
    is_simulated = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.base_url = config.base_url or OPENAI_BASE_URL
        # One SDK client per event loop: its connection pool belongs to the loop that opened
        # the connections, and reusing connections matters for time-to-first-token.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI]
        self._clients = weakref.WeakKeyDictionary()

    def _client(self) -> openai.AsyncOpenAI:
        api_key = resolve_api_key(self.config, "openai")
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(api_key=api_key, base_url=self.base_url, max_retries=0)
            self._clients[loop] = client
        elif client.api_key != api_key:
            # A rotated key takes effect on the next request. with_options shares the
            # connection pool, so streams still running on the old key are not cut and no
            # unclosed client is left behind.
            client = client.with_options(api_key=api_key, max_retries=0)
            self._clients[loop] = client
        return client

    @staticmethod
    def _messages(request: ChatRequest) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.extend({"role": m["role"], "content": m["content"]} for m in request.messages)
        return messages

    @staticmethod
    def _params(request: ChatRequest) -> dict[str, Any]:
        clash = _RESERVED_PARAMS.intersection(request.params)
        if clash:
            raise ProviderError(f"arm params may not set {sorted(clash)}", transient=False)
        return dict(request.params)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        client = self._client()
        stream = await client.chat.completions.create(
            model=request.model,
            messages=self._messages(request),  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            timeout=sdk_timeout(request.timeout),
            **self._params(request),
        )
        model_reported: str | None = None
        fingerprint: str | None = None
        response_id: str | None = None
        raw_finish: str | None = None
        usage: Any = None
        parts: list[str] = []
        async with stream:
            async for chunk in stream:
                model_reported = chunk.model or model_reported
                fingerprint = getattr(chunk, "system_fingerprint", None) or fingerprint
                response_id = chunk.id or response_id
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue  # n is fixed at 1; ignore anything else defensively
                    content = choice.delta.content if choice.delta is not None else None
                    if content:
                        parts.append(content)
                        yield TextDelta(content)
                    if choice.finish_reason:
                        raw_finish = choice.finish_reason
        if raw_finish is None:
            # The body ended cleanly but the model never finished: a proxy cut the reply.
            raise ProviderError("stream ended before the model finished", transient=True)
        if usage is not None and usage.completion_tokens is not None:
            prompt_tokens, completion_tokens, estimated = (
                usage.prompt_tokens or 0,
                usage.completion_tokens,
                False,
            )
        else:
            prompt_tokens = estimate_prompt_tokens(request.system, request.messages)
            completion_tokens = estimate_tokens("".join(parts))
            estimated = True
        yield StreamEnd(
            finish_reason=normalise_finish_reason(raw_finish),
            model_reported=model_reported,
            system_fingerprint=fingerprint,
            response_id=response_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            usage_estimated=estimated,
            raw_finish_reason=raw_finish,
        )

    def _translate_error(self, exc: Exception) -> ProviderError:
        return translate_sdk_error(exc, openai)

    async def check(self, model: str) -> str:
        """Send one short non-streamed message to `model`; return its reply text."""
        try:
            response = await self._client().chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": CHECK_PROMPT}],
                timeout=sdk_timeout(Timeouts(connect=5.0, read=30.0)),
            )
        except Exception as exc:
            raise self._translate_error(exc) from exc
        if not response.choices:
            raise ProviderError("upstream answered with no choices", transient=False)
        return response.choices[0].message.content or ""

    async def aclose(self) -> None:
        # Only this loop's client can be closed from here; others go with their loops.
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()
