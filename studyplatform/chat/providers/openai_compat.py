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
import json
import urllib.request
import weakref
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import httpx2
import openai

from studyplatform.core.provider_config import OPENAI_BASE_URL

from . import lean_http
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


def _status_error(status: int, body: bytes, headers: Any, reason: str) -> ProviderError:
    """An upstream error status as ProviderError, with the message of its JSON error body
    when there is one (as the SDK's APIStatusError reported it)."""
    detail = ""
    try:
        parsed = json.loads(body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        detail = error.get("message", "") if isinstance(error, dict) else str(error or "")
    except ValueError:
        detail = body[:200].decode("utf-8", "replace")
    return ProviderError(
        f"upstream returned HTTP {status}: {detail or reason}",
        status=status,
        transient=is_transient_status(status),
        retry_after=_retry_after(headers),
    )


def translate_httpx_error(exc: httpx.HTTPError) -> ProviderError:
    """Transport failures of the plain-httpx stream, worded as translate_sdk_error words the
    SDK's."""
    if isinstance(exc, httpx.TimeoutException):
        phase = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
        return ProviderError(f"upstream {phase} timeout", transient=True)
    if isinstance(exc, httpx.RemoteProtocolError):
        return ProviderError(f"upstream closed the stream early: {exc}", transient=True)
    return ProviderError(f"connection to upstream failed: {exc!r}", transient=True)


class _ChunkState:
    """What the chunks of one chat-completions stream have said so far."""

    def __init__(self) -> None:
        self.model: str | None = None
        self.fingerprint: str | None = None
        self.response_id: str | None = None
        self.raw_finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.parts: list[str] = []
        self.done = False  # the `data: [DONE]` line arrived
        self._buffer = b""

    def feed_bytes(self, chunk: bytes) -> list[str]:
        """Record a piece of the raw event stream; return the reply text of the lines it
        completes. Lines are split here on bytes (SSE framing is plain ASCII newlines), so a
        piece that ends inside a line or inside a UTF-8 character waits for the next one."""
        if self.done:
            return []
        buffer = self._buffer + chunk
        texts: list[str] = []
        while (cut := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:cut], buffer[cut + 1 :]
            if not line.startswith(b"data:"):
                continue  # blank separators, comments (": keep-alive"), event names
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                break
            texts.extend(self.feed(data))
        self._buffer = buffer
        return texts

    def feed(self, data: str | bytes) -> list[str]:
        """Record one `data:` payload; return the reply text it carries (choice 0 only)."""
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise ProviderError(f"upstream sent a malformed chunk: {data[:80]!r}") from exc
        if not isinstance(chunk, dict):
            raise ProviderError(f"upstream sent a malformed chunk: {data[:80]!r}")
        if chunk.get("error") is not None:
            # An error object inside an otherwise healthy stream: the server failed mid-reply.
            error = chunk["error"]
            detail = error.get("message") if isinstance(error, dict) else error
            raise ProviderError(f"upstream error in stream: {detail}", transient=True)
        self.model = chunk.get("model") or self.model
        self.fingerprint = chunk.get("system_fingerprint") or self.fingerprint
        self.response_id = chunk.get("id") or self.response_id
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        texts = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n is fixed at 1; ignore anything else defensively
            content = (choice.get("delta") or {}).get("content")
            if content:
                texts.append(content)
                self.parts.append(content)
            if choice.get("finish_reason"):
                self.raw_finish = choice["finish_reason"]
        return texts


class OpenAICompatProvider(Provider):
    """Streams chat completions from any OpenAI-compatible endpoint."""

    name = "openai"
    is_simulated = False
    merges_buffered_text = True  # _stream yields the text of each read as one delta

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.base_url = config.base_url or OPENAI_BASE_URL
        # One SDK client per event loop: its connection pool belongs to the loop that opened
        # the connections, and reusing connections matters for time-to-first-token.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI]
        self._clients = weakref.WeakKeyDictionary()
        self._http_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, httpx.AsyncClient
        ] = weakref.WeakKeyDictionary()
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, lean_http.Pool | None] = (
            weakref.WeakKeyDictionary()
        )

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

    def _http(self) -> httpx.AsyncClient:
        """This loop's httpx client, for streams that must go through a proxy (see _stream)."""
        loop = asyncio.get_running_loop()
        client = self._http_clients.get(loop)
        if client is None:
            # No timeout here: each request passes its own (Timeouts of the arm).
            client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100)
            )
            self._http_clients[loop] = client
        return client

    def _lean_pool(self) -> lean_http.Pool | None:
        """This loop's keep-alive pool for the lean reader, or None when the environment
        routes the base URL through a proxy (HTTP(S)_PROXY/ALL_PROXY, unless NO_PROXY
        exempts it): the lean reader speaks only directly to the endpoint, so such streams go
        through httpx, which honours the proxy as it always did. Decided once per loop, as
        httpx reads the environment once per client."""
        loop = asyncio.get_running_loop()
        try:
            return self._pools[loop]
        except KeyError:
            pass
        parts = urlsplit(self.base_url)
        proxies = urllib.request.getproxies()
        proxied = bool(proxies.get(parts.scheme) or proxies.get("all")) and not (
            urllib.request.proxy_bypass(parts.hostname or "")
        )
        pool = None if proxied else lean_http.Pool()
        self._pools[loop] = pool
        return pool

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """POST the completion and read its event stream with our own small HTTP/1.1 reader
        (lean_http), not the SDK and not httpx.

        Why not the SDK here: relaying tokens was half of the web process's CPU per message.
        The SDK's stack around each chunk (its own httpx fork, response wrappers, several
        generator layers) went first; then httpx/httpcore/anyio's read path (connection and
        stream wrappers, a cancel scope per read) was still ~6.8 ms of a 40-token reply. This
        path sends exactly what the SDK sent (same URL, headers, body), keeps the arm's
        timeouts, maps failures to the same ProviderErrors, and reads the body with one socket
        read per chunk. The SDK stays for everything else (check(), the Anthropic provider);
        httpx stays for upstreams reached through a proxy.
        """
        api_key = resolve_api_key(self.config, "openai")
        body = {
            "model": request.model,
            "messages": self._messages(request),
            "stream": True,
            "stream_options": {"include_usage": True},
            **self._params(request),
        }
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        payload = json.dumps(body).encode()
        state = _ChunkState()
        pool = self._lean_pool()
        if pool is None:
            async for text in self._stream_httpx(url, payload, headers, request, state):
                yield TextDelta(text)
        else:
            response = await lean_http.post_stream(
                pool,
                url,
                body=payload,
                headers=headers,
                connect_timeout=request.timeout.connect,
                read_timeout=request.timeout.read,
            )
            async with response:
                if response.status >= 400:
                    raise _status_error(
                        response.status, await response.aread(), response.headers, response.reason
                    )
                try:
                    async for chunk in response.aiter_body():
                        # The text of every event in this read, as one delta.
                        if texts := state.feed_bytes(chunk):
                            yield TextDelta("".join(texts))
                        if state.done:
                            # Read on to the body's end only so the connection can be reused;
                            # the reply is complete, so that wait is short and may fail.
                            response.shorten_read_timeout(1.0)
                except ProviderError:
                    if not state.done:
                        raise
        yield self._end(request, state)

    async def _stream_httpx(
        self,
        url: str,
        payload: bytes,
        headers: dict[str, str],
        request: ChatRequest,
        state: _ChunkState,
    ) -> AsyncIterator[str]:
        """The same stream read through httpx (for proxied upstreams)."""
        timeout = httpx.Timeout(request.timeout.read, connect=request.timeout.connect)
        async with self._http().stream(
            "POST", url, content=payload, headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                raise _status_error(
                    response.status_code,
                    await response.aread(),
                    response.headers,
                    response.reason_phrase,
                )
            async for chunk in response.aiter_raw():
                if texts := state.feed_bytes(chunk):
                    yield "".join(texts)
                if state.done:
                    break

    @staticmethod
    def _end(request: ChatRequest, state: _ChunkState) -> StreamEnd:
        """The stream's last event, from what its chunks said."""
        if state.raw_finish is None:
            # The body ended cleanly but the model never finished: a proxy cut the reply.
            raise ProviderError("stream ended before the model finished", transient=True)
        usage = state.usage or {}
        if usage.get("completion_tokens") is not None:
            prompt_tokens, completion_tokens, estimated = (
                usage.get("prompt_tokens") or 0,
                usage["completion_tokens"],
                False,
            )
        else:
            prompt_tokens = estimate_prompt_tokens(request.system, request.messages)
            completion_tokens = estimate_tokens("".join(state.parts))
            estimated = True
        return StreamEnd(
            finish_reason=normalise_finish_reason(state.raw_finish),
            model_reported=state.model,
            system_fingerprint=state.fingerprint,
            response_id=state.response_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            usage_estimated=estimated,
            raw_finish_reason=state.raw_finish,
        )

    def _translate_error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, httpx.HTTPError):
            return translate_httpx_error(exc)
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
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.close()
        http = self._http_clients.pop(loop, None)
        if http is not None:
            await http.aclose()
        pool = self._pools.pop(loop, None)
        if pool is not None:
            pool.close()
