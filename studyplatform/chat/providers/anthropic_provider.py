"""Anthropic Messages API through the official ``anthropic`` SDK (AsyncAnthropic), streamed.

Reads the raw stream events: message_start carries the response id, the model and the input
token count; content_block_delta/text_delta carries text; message_delta carries the stop
reason and the cumulative output token count. The SDK's retries are disabled (max_retries=0)
for the same reason as in openai_compat: only the caller may retry, and only before the first
token.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anthropic

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
    normalise_finish_reason,
)
from .config import ProviderConfig, resolve_api_key
from .openai_compat import CHECK_PROMPT, sdk_timeout, translate_sdk_error

ANTHROPIC_BASE_URL = "https://api.anthropic.com"

# The Messages API requires max_tokens; arms that do not set one get this.
DEFAULT_MAX_TOKENS = 1024

# Arm params with a named argument in the SDK's messages.create, with their Anthropic names.
# Sampling params (temperature, top_p, top_k) have no named argument in this SDK version
# (anthropic 2.x), so they travel in extra_body, as does anything else an arm sets.
_NAMED_PARAMS = {
    "max_tokens": "max_tokens",
    "stop": "stop_sequences",
    "stop_sequences": "stop_sequences",
    "metadata": "metadata",
}
# Params an arm may set for OpenAI-style models that Anthropic has no equivalent for. They are
# dropped (documented in docs/providers.md) so one arm definition can be switched between kinds.
_IGNORED_PARAMS = frozenset({"seed", "presence_penalty", "frequency_penalty", "logit_bias"})


def _usage_value(usage: Any, name: str) -> int:
    value = getattr(usage, name, None) if usage is not None else None
    return int(value) if isinstance(value, int) else 0


class AnthropicProvider(Provider):
    """Streams replies from Anthropic's Messages API (or a server speaking it)."""

    name = "anthropic"
    is_simulated = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.base_url = config.base_url or ANTHROPIC_BASE_URL
        # Per event loop, as in OpenAICompatProvider: pools belong to their loop.
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, anthropic.AsyncAnthropic
        ] = weakref.WeakKeyDictionary()

    def _client(self) -> anthropic.AsyncAnthropic:
        api_key = resolve_api_key(self.config, "anthropic")
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # Passing api_key and base_url explicitly stops the SDK from reading other
            # environment variables or on-disk profiles.
            client = anthropic.AsyncAnthropic(
                api_key=api_key, base_url=self.base_url, max_retries=0
            )
            self._clients[loop] = client
        elif client.api_key != api_key:
            # A rotated key: same connection pool, new credentials (see OpenAICompatProvider).
            client = client.with_options(api_key=api_key, max_retries=0)
            self._clients[loop] = client
        return client

    @staticmethod
    def _params(request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": DEFAULT_MAX_TOKENS}
        extra: dict[str, Any] = {}
        for key, value in request.params.items():
            if key in _IGNORED_PARAMS:
                continue
            if key in _NAMED_PARAMS:
                params[_NAMED_PARAMS[key]] = value
            else:
                # Sent as-is; the API rejects what a model does not support with a 400, which
                # the launch checklist's test message surfaces before a study starts.
                extra[key] = value
        if request.system:
            params["system"] = request.system
        if extra:
            params["extra_body"] = extra
        return params

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        client = self._client()
        stream = await client.messages.create(
            model=request.model,
            messages=[{"role": m["role"], "content": m["content"]} for m in request.messages],
            stream=True,
            timeout=sdk_timeout(request.timeout),
            **self._params(request),
        )
        model_reported: str | None = None
        response_id: str | None = None
        raw_finish: str | None = None
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        parts: list[str] = []
        async with stream:
            async for event in stream:
                kind = getattr(event, "type", None)
                if kind == "message_start":
                    message = event.message
                    response_id = getattr(message, "id", None)
                    model_reported = getattr(message, "model", None)
                    usage = getattr(message, "usage", None)
                    if usage is not None and getattr(usage, "input_tokens", None) is not None:
                        # Cached prompt tokens are reported separately; the prompt is all three.
                        prompt_tokens = (
                            _usage_value(usage, "input_tokens")
                            + _usage_value(usage, "cache_creation_input_tokens")
                            + _usage_value(usage, "cache_read_input_tokens")
                        )
                elif kind == "content_block_delta":
                    delta = event.delta
                    if getattr(delta, "type", None) == "text_delta" and delta.text:
                        parts.append(delta.text)
                        yield TextDelta(delta.text)
                elif kind == "message_delta":
                    raw_finish = getattr(event.delta, "stop_reason", None) or raw_finish
                    usage = getattr(event, "usage", None)
                    if usage is not None and getattr(usage, "output_tokens", None) is not None:
                        completion_tokens = usage.output_tokens
        if raw_finish is None:
            raise ProviderError("stream ended before the model finished", transient=True)
        estimated = prompt_tokens is None or completion_tokens is None
        if prompt_tokens is None:
            prompt_tokens = estimate_prompt_tokens(request.system, request.messages)
        if completion_tokens is None:
            completion_tokens = estimate_tokens("".join(parts))
        yield StreamEnd(
            finish_reason=normalise_finish_reason(raw_finish),
            model_reported=model_reported,
            # Anthropic has no system fingerprint.
            system_fingerprint=None,
            response_id=response_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            usage_estimated=estimated,
            raw_finish_reason=raw_finish,
        )

    def _translate_error(self, exc: Exception) -> ProviderError:
        return translate_sdk_error(exc, anthropic)

    async def check(self, model: str) -> str:
        """Send one short non-streamed message to `model`; return its reply text."""
        try:
            message = await self._client().messages.create(
                model=model,
                max_tokens=16,
                messages=[{"role": "user", "content": CHECK_PROMPT}],
                timeout=sdk_timeout(Timeouts(connect=5.0, read=30.0)),
            )
        except Exception as exc:
            raise self._translate_error(exc) from exc
        return "".join(
            block.text for block in message.content if getattr(block, "type", None) == "text"
        )

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()
