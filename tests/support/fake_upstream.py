"""A fake model server on loopback, for tests, benchmarks and demos: never the internet.

A small ASGI app served by uvicorn (the platform's own server), outside the product package:
nothing in studyplatform/ imports it (the product's pilot mode is the simulated provider,
studyplatform/chat/providers/simulated.py).

Endpoints:
  POST /v1/chat/completions  OpenAI chat completions, streamed (SSE) or not
  POST /v1/messages          Anthropic Messages, streamed (SSE with event names) or not
  POST /v1/moderations       OpenAI moderation ([[moderation: CATEGORY]] flags a category)
  POST /v1/audio/transcriptions  OpenAI speech-to-text (multipart: file, model, language):
                             {"text": ..., "duration": seconds when the file is a WAV}
  POST /v1/audio/speech      OpenAI text-to-speech (JSON: model, voice, input): a WAV of
                             silence, 200 ms per word of input
  GET  /v1/models            model list (OpenAI shape; Anthropic shape when the request carries
                             an anthropic-version header)

Behaviour is deterministic and scripted, either by directives in the last user message
(``[[tokens: 20]]``, ``[[fault: 429 times: 2]]``, ... listed in docs/providers.md) or
programmatically::

    with FakeUpstream() as upstream:           # uvicorn in a background thread, a free port
        upstream.script(fault="500")           # the next request fails with HTTP 500
        client = AsyncOpenAI(base_url=upstream.base_url, api_key="test")
        ...
        upstream.requests                      # JSON bodies received so far

Run standalone (own process, e.g. for a benchmark):
``python -m tests.support.fake_upstream --port 8089``, or with uvicorn's own command line
``uvicorn tests.support.fake_upstream:create_app --factory --port 8089``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import email.parser
import email.policy
import hashlib
import io
import json
import logging
import re
import socket
import threading
import time
import wave
from dataclasses import dataclass, field
from typing import Any

import uvicorn

DEFAULT_MODEL = "fake-model"
FINGERPRINT = "fp_fake_upstream"
MODELS = ("fake-model", "gpt-4o-mini", "claude-fake-1")
DEFAULT_REPLY_PREFIX = "Fake reply to:"
DEFAULT_TOKENS = 12
_FILLER_TEXT = (
    "this is a deterministic reply from the fake upstream used for tests and benchmarks "
    "it streams one word per chunk and counts one token per word"
)
_FILLER = _FILLER_TEXT.split()

_DIRECTIVE = re.compile(r"\[\[\s*([a-z_]+)\s*:\s*(.*?)\s*\]\]", re.IGNORECASE | re.DOTALL)
_TIMES = re.compile(r"\s+times:\s*(\d+)\s*$", re.IGNORECASE)
_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class _CloseConnection(Exception):
    """Raised mid-response to make uvicorn close the socket without ending the chunked body:
    the only way an ASGI app can cut a connection, which `disconnect_after` and `stall` need."""


class _QuietScriptedClose(logging.Filter):
    # uvicorn logs every exception that ends an ASGI app; a scripted cut is not an error.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _CloseConnection))


logging.getLogger("uvicorn.error").addFilter(_QuietScriptedClose())


@dataclass
class Behaviour:
    """How to answer one request. Built from defaults, then directives, then a script entry."""

    reply: str | None = None
    tokens: int | None = None
    delay_ms: float = 0.0
    ttft_ms: float = 0.0
    status: int | None = None  # answer with this HTTP error status instead of a reply
    stall: bool = False  # send headers and the first (empty) chunk, then hang
    disconnect_after: int | None = None  # close the socket after this many text chunks
    no_usage: bool = False
    fail_times: int | None = None  # fail only the first N identical requests
    finish: str = "stop"
    model: str | None = None
    retry_after: float | None = None


def apply_directive(behaviour: Behaviour, name: str, value: str) -> None:
    """Set one directive (as written in a message or passed to script()) on `behaviour`."""
    name = name.strip().lower()
    value = str(value).strip()
    if name == "reply":
        behaviour.reply = value
    elif name == "tokens":
        behaviour.tokens = int(value)
    elif name in ("delay_ms", "ttft_ms", "retry_after"):
        setattr(behaviour, name, float(value))
    elif name == "finish":
        behaviour.finish = value
    elif name == "model":
        behaviour.model = value
    elif name == "fault":
        times = _TIMES.search(value)
        if times:
            behaviour.fail_times = int(times.group(1))
            value = value[: times.start()].strip()
        fault = value.lower()
        if fault.isdigit():
            behaviour.status = int(fault)
        elif fault == "stall":
            behaviour.stall = True
        elif fault == "no_usage":
            behaviour.no_usage = True
        elif fault.startswith("disconnect_after"):
            behaviour.disconnect_after = int(fault.split(":", 1)[1])
        else:
            raise ValueError(f"unknown fault {value!r}")
    else:
        raise ValueError(f"unknown directive {name!r}")


@dataclass
class RecordedRequest:
    """One request as the fake upstream received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Reply:
    """A planned reply: the words to stream and the numbers to report."""

    words: list[str]
    finish: str
    model: str
    prompt_tokens: int
    response_id: str
    created: int = field(default_factory=lambda: int(time.time()))


def _text_of(content: Any) -> str:
    # Content may be a string or a list of typed blocks (both APIs allow it).
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class _Response:
    """Writes one HTTP response through ASGI `send` (uvicorn adds chunked framing to a body
    without a content-length)."""

    def __init__(self, send) -> None:
        self.send = send

    async def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = _dumps(body).encode()
        head = [(b"content-type", b"application/json")]
        head += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        head.append((b"content-length", str(len(payload)).encode()))
        await self.send({"type": "http.response.start", "status": status, "headers": head})
        await self.send({"type": "http.response.body", "body": payload})

    async def start_stream(self) -> None:
        head = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await self.send({"type": "http.response.start", "status": 200, "headers": head})

    async def event(self, data: str, event: str | None = None) -> None:
        text = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
        await self.send({"type": "http.response.body", "body": text.encode(), "more_body": True})

    async def end_stream(self) -> None:
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


class FakeUpstream:
    """The fake server, an ASGI app. As a context manager (or start()/stop()) it serves itself
    with uvicorn from a background thread on a free port; create_app() hands it to uvicorn's
    command line."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._script: list[dict[str, Any]] = []
        self._attempts: dict[str, int] = {}
        self._sequence = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        # Set on the serving loop (lifespan start-up); stop() sets `_closing` so that stalled
        # and running streams end now instead of holding uvicorn's graceful shutdown.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None

    # -- public API ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The Anthropic-style base URL (the SDK appends /v1/messages itself)."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[Any]:
        """JSON bodies of the POST requests received so far, oldest first (a copy)."""
        with self._lock:
            return [r.body for r in self._log if r.method == "POST"]

    @property
    def log(self) -> list[RecordedRequest]:
        """Every request received (method, path, headers, body), oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    def script(self, count: int = 1, **directives: Any) -> None:
        """Queue a behaviour for the next `count` POST requests.

        Keywords are directive names with directive values, e.g.
        script(fault="429"), script(count=2, fault="disconnect_after: 3", tokens=10).
        A scripted value overrides the same directive in the message.
        """
        probe = Behaviour()
        for name, value in directives.items():
            apply_directive(probe, name, str(value))  # fail now, in the test, on a typo
        with self._lock:
            self._script.extend(dict(directives) for _ in range(count))

    def reset(self) -> None:
        """Forget received requests, queued scripts and fault attempt counters."""
        with self._lock:
            self._log.clear()
            self._script.clear()
            self._attempts.clear()

    def start(self) -> FakeUpstream:
        """Serve from a background thread (uvicorn, its own event loop); returns self."""
        sock = self._bind()
        config = uvicorn.Config(
            self,
            lifespan="on",
            # Leave the test process's logging alone; no access log, no proxy-header rewriting.
            log_config=None,
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-upstream", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                sock.close()
                raise RuntimeError("the fake upstream did not start within 10 s")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """End open streams, stop the server and its thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._end_streams()
        server.should_exit = True
        thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve(self, *, log_level: str = "warning") -> None:
        """Serve in this thread until SIGINT/SIGTERM (the command line)."""
        sock = self._bind()
        print(f"fake upstream: OpenAI base_url {self.base_url}", flush=True)
        print(f"fake upstream: Anthropic base_url {self.anthropic_base_url}", flush=True)
        config = uvicorn.Config(
            self, lifespan="on", log_level=log_level, access_log=False, proxy_headers=False
        )
        uvicorn.Server(config).run(sockets=[sock])

    def _bind(self) -> socket.socket:
        # Bound (and listening) before uvicorn starts, so the port is known at once, even
        # when 0 asked for any free one.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(2048)
        self.port = sock.getsockname()[1]
        return sock

    def _end_streams(self) -> None:
        loop, closing = self._loop, self._closing
        if loop is not None and closing is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(closing.set)

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        await self._dispatch(scope["method"], scope["path"], headers, raw, _Response(send), receive)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self._closing = asyncio.Event()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._closing.set()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _check_open(self) -> None:
        if self._closing is not None and self._closing.is_set():
            raise _CloseConnection

    async def _dispatch(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        conn: _Response,
        receive,
    ) -> None:
        """Answer one request."""
        if method == "POST" and path in ("/v1/audio/transcriptions", "/v1/audio/speech"):
            await self._audio(path, headers, raw, conn, receive)
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            await conn.json(400, {"error": {"message": "body is not JSON", "type": "invalid"}})
            return
        with self._lock:
            self._log.append(RecordedRequest(method, path, dict(headers), body))
        if method == "GET" and path.rstrip("/") == "/v1/models":
            await conn.json(200, self._models(anthropic="anthropic-version" in headers))
        elif method == "POST" and path == "/v1/chat/completions":
            await self._answer(body or {}, raw, conn, receive, anthropic=False)
        elif method == "POST" and path == "/v1/messages":
            await self._answer(body or {}, raw, conn, receive, anthropic=True)
        elif method == "POST" and path == "/v1/moderations":
            await conn.json(200, self._moderation(body or {}))
        else:
            status = 405 if path in ("/v1/models", "/v1/chat/completions", "/v1/messages") else 404
            await conn.json(status, {"error": {"message": f"{method} {path} not served"}})

    # -- audio ----------------------------------------------------------------------------

    @staticmethod
    def _multipart(headers: dict[str, str], raw: bytes) -> dict[str, Any]:
        """The fields of a multipart/form-data body; the file as its name, type and bytes."""
        head = f"Content-Type: {headers.get('content-type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        out: dict[str, Any] = {}
        if not message.is_multipart():
            return out
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename():
                out[name] = {
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "bytes": payload,
                }
            else:
                out[name] = payload.decode()
        return out

    @staticmethod
    def _silence_wav(duration_ms: int) -> bytes:
        out = io.BytesIO()
        with wave.open(out, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(8000)
            writer.writeframes(b"\x00\x00" * (8 * duration_ms))
        return out.getvalue()

    async def _audio(self, path: str, headers: dict[str, str], raw: bytes, conn, receive) -> None:
        """Speech-to-text and text-to-speech. Scripted with script(): fault (an HTTP status or
        stall), delay_ms, and reply (the transcript to return)."""
        if path.endswith("/transcriptions"):
            body: Any = self._multipart(headers, raw)
        else:
            try:
                body = json.loads(raw)
            except ValueError:
                await conn.json(400, {"error": {"message": "body is not JSON"}})
                return
        with self._lock:
            self._log.append(RecordedRequest("POST", path, dict(headers), body))
            scripted = self._script.pop(0) if self._script else {}
        behaviour = Behaviour()
        for name, value in scripted.items():
            apply_directive(behaviour, name, str(value))
        if behaviour.delay_ms:
            await asyncio.sleep(behaviour.delay_ms / 1000)
        if behaviour.stall:
            await self._hang(receive)
        if behaviour.status is not None:
            await self._error(conn, behaviour, anthropic=False)
            return
        if path.endswith("/transcriptions"):
            upload = body.get("file") if isinstance(body, dict) else None
            if not isinstance(upload, dict) or not body.get("model"):
                await conn.json(400, {"error": {"message": "file and model are required"}})
                return
            answer: dict[str, Any] = {
                "text": behaviour.reply
                if behaviour.reply is not None
                else f"Fake transcript of {len(upload['bytes'])} bytes"
            }
            with (
                contextlib.suppress(wave.Error, EOFError),
                wave.open(io.BytesIO(upload["bytes"])) as reader,
            ):
                answer["duration"] = reader.getnframes() / reader.getframerate()
            await conn.json(200, answer)
            return
        words = len(str(body.get("input") or "").split())
        audio = self._silence_wav(max(200, 200 * words))
        head = [(b"content-type", b"audio/wav"), (b"content-length", str(len(audio)).encode())]
        await conn.send({"type": "http.response.start", "status": 200, "headers": head})
        await conn.send({"type": "http.response.body", "body": audio})

    @staticmethod
    def _moderation(body: dict[str, Any]) -> dict[str, Any]:
        """OpenAI moderation shape. The directive [[moderation: CATEGORY]] in the input flags that
        category (score 0.99) — full names such as self-harm/intent, or the short names
        sh, sh_intent, sh_instructions (so a test message need not contain crisis words);
        anything else comes back unflagged."""
        text = body.get("input") if isinstance(body.get("input"), str) else ""
        names = (
            "harassment",
            "hate",
            "self-harm",
            "self-harm/intent",
            "self-harm/instructions",
            "sexual",
            "violence",
        )
        match = re.search(r"\[\[moderation:\s*([\w/-]+)\s*\]\]", text)
        short = {
            "sh": "self-harm",
            "sh_intent": "self-harm/intent",
            "sh_instructions": "self-harm/instructions",
        }
        hit = short.get(match.group(1), match.group(1)) if match else None
        categories = {n: n == hit for n in names}
        scores = {n: 0.99 if n == hit else 0.001 for n in names}
        return {
            "id": "modr-fake",
            "model": body.get("model") or "omni-moderation-latest",
            "results": [
                {"flagged": hit in names, "categories": categories, "category_scores": scores}
            ],
        }

    @staticmethod
    def _models(*, anthropic: bool) -> dict[str, Any]:
        if anthropic:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in MODELS
            ]
            return {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS]
        return {"object": "list", "data": data}

    # -- scripted behaviour -------------------------------------------------------------------

    def _behaviour(self, body: dict[str, Any], raw: bytes, path_key: str) -> Behaviour:
        behaviour = Behaviour()
        last_user = next(
            (
                _text_of(m.get("content"))
                for m in reversed(body.get("messages") or [])
                if m.get("role") == "user"
            ),
            "",
        )
        for name, value in _DIRECTIVE.findall(last_user):
            with contextlib.suppress(ValueError):  # an unknown directive is just text
                apply_directive(behaviour, name, value)
        with self._lock:
            scripted = self._script.pop(0) if self._script else None
            if scripted:
                for name, value in scripted.items():
                    apply_directive(behaviour, name, str(value))
            if behaviour.fail_times is not None:
                # "Fail the first N identical requests": a retry sends the same body, so it
                # is counted against the same key and eventually succeeds.
                key = hashlib.sha256(path_key.encode() + raw).hexdigest()
                seen = self._attempts.get(key, 0)
                self._attempts[key] = seen + 1
                if seen >= behaviour.fail_times:
                    behaviour = dataclasses.replace(
                        behaviour, status=None, stall=False, disconnect_after=None, no_usage=False
                    )
        return behaviour

    def _plan(self, body: dict[str, Any], behaviour: Behaviour, anthropic: bool) -> _Reply:
        messages = body.get("messages") or []
        last_user = next(
            (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        if behaviour.reply is not None:
            words = behaviour.reply.split()
        else:
            echo = _DIRECTIVE.sub(" ", last_user).split()[:6]
            base = [*DEFAULT_REPLY_PREFIX.split(), *echo]
            count = behaviour.tokens if behaviour.tokens is not None else DEFAULT_TOKENS
            pool = base + _FILLER
            words = [pool[i % len(pool)] for i in range(count)]
        finish = behaviour.finish
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(limit, int) and 0 < limit < len(words):
            words, finish = words[:limit], "length"
        # A documented, exact prompt count: words of every message (and system) + 3 each.
        system = body.get("system")
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) + 3 for m in messages)
        if isinstance(system, str):
            prompt_tokens += len(system.split()) + 3
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        prefix = "msg_fake" if anthropic else "chatcmpl-fake"
        return _Reply(
            words=words,
            finish=finish,
            model=behaviour.model or body.get("model") or DEFAULT_MODEL,
            prompt_tokens=prompt_tokens,
            response_id=f"{prefix}{sequence:08d}",
        )

    async def _answer(
        self,
        body: dict[str, Any],
        raw: bytes,
        conn: _Response,
        receive,
        *,
        anthropic: bool,
    ) -> None:
        behaviour = self._behaviour(body, raw, "anthropic" if anthropic else "openai")
        if behaviour.status is not None:
            await self._error(conn, behaviour, anthropic)
            return
        reply = self._plan(body, behaviour, anthropic)
        if not body.get("stream"):
            if behaviour.ttft_ms:
                await asyncio.sleep(behaviour.ttft_ms / 1000)
            build = self._anthropic_message if anthropic else self._openai_completion
            await conn.json(200, build(reply, behaviour))
            return
        await conn.start_stream()
        if anthropic:
            await self._stream_anthropic(conn, receive, reply, behaviour)
        else:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await self._stream_openai(conn, receive, reply, behaviour, include_usage)

    async def _error(self, conn: _Response, behaviour: Behaviour, anthropic: bool) -> None:
        status = behaviour.status or 500
        message = f"fake upstream scripted HTTP {status}"
        headers = {}
        if behaviour.retry_after is not None:
            headers["retry-after"] = f"{behaviour.retry_after:g}"
        if anthropic:
            kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
            body = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
        await conn.json(status, body, headers)

    async def _hang(self, receive) -> None:
        """Wait until the client leaves (or the server stops), then cut the connection. No
        timer per stall: the handler ends as soon as the client closes."""

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waiters = {
            asyncio.ensure_future(client_gone()),
            asyncio.ensure_future(self._closing.wait()),
        }
        _done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        raise _CloseConnection

    async def _pause(self, seconds: float) -> None:
        if seconds:
            await asyncio.sleep(seconds)
        self._check_open()

    @staticmethod
    def _word(reply: _Reply, index: int) -> str:
        word = reply.words[index]
        return word if index == 0 else " " + word

    async def _stream_openai(
        self,
        conn: _Response,
        receive,
        reply: _Reply,
        behaviour: Behaviour,
        include_usage: bool,
    ) -> None:
        base = {
            "id": reply.response_id,
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": FINGERPRINT,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _dumps({**base, "choices": [choice]})

        if behaviour.stall:
            await conn.event(chunk({"role": "assistant", "content": ""}))
            await self._hang(receive)
        await self._pause(behaviour.ttft_ms / 1000)
        delay = behaviour.delay_ms / 1000
        for index in range(len(reply.words)):
            if index:
                await self._pause(delay)
            if behaviour.disconnect_after is not None and index >= behaviour.disconnect_after:
                raise _CloseConnection
            delta = {"content": self._word(reply, index)}
            if index == 0:
                delta = {"role": "assistant", **delta}
            await conn.event(chunk(delta))
        await conn.event(chunk({}, reply.finish))
        if include_usage and not behaviour.no_usage:
            completion = len(reply.words)
            usage = {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": reply.prompt_tokens + completion,
            }
            await conn.event(_dumps({**base, "choices": [], "usage": usage}))
        await conn.event("[DONE]")
        await conn.end_stream()

    async def _stream_anthropic(
        self,
        conn: _Response,
        receive,
        reply: _Reply,
        behaviour: Behaviour,
    ) -> None:
        message: dict[str, Any] = {
            "id": reply.response_id,
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if not behaviour.no_usage:
            message["usage"] = {"input_tokens": reply.prompt_tokens, "output_tokens": 1}
        await conn.event(_dumps({"type": "message_start", "message": message}), "message_start")
        if behaviour.stall:
            await self._hang(receive)
        block = {"type": "content_block_start", "index": 0}
        block["content_block"] = {"type": "text", "text": ""}  # type: ignore[assignment]
        await conn.event(_dumps(block), "content_block_start")
        await self._pause(behaviour.ttft_ms / 1000)
        delay = behaviour.delay_ms / 1000
        for index in range(len(reply.words)):
            if index:
                await self._pause(delay)
            if behaviour.disconnect_after is not None and index >= behaviour.disconnect_after:
                raise _CloseConnection
            delta = {"type": "text_delta", "text": self._word(reply, index)}
            event = {"type": "content_block_delta", "index": 0, "delta": delta}
            await conn.event(_dumps(event), "content_block_delta")
        await conn.event(_dumps({"type": "content_block_stop", "index": 0}), "content_block_stop")
        stop = _ANTHROPIC_STOP.get(reply.finish, reply.finish)
        message_delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
        }
        if not behaviour.no_usage:
            message_delta["usage"] = {"output_tokens": len(reply.words)}
        await conn.event(_dumps(message_delta), "message_delta")
        await conn.event(_dumps({"type": "message_stop"}), "message_stop")
        await conn.end_stream()

    @staticmethod
    def _openai_completion(reply: _Reply, behaviour: Behaviour) -> dict[str, Any]:
        text = "".join(FakeUpstream._word(reply, i) for i in range(len(reply.words)))
        body: dict[str, Any] = {
            "id": reply.response_id,
            "object": "chat.completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": reply.finish,
                }
            ],
        }
        if not behaviour.no_usage:
            completion = len(reply.words)
            body["usage"] = {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": reply.prompt_tokens + completion,
            }
        return body

    @staticmethod
    def _anthropic_message(reply: _Reply, behaviour: Behaviour) -> dict[str, Any]:
        text = "".join(FakeUpstream._word(reply, i) for i in range(len(reply.words)))
        return {
            "id": reply.response_id,
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": _ANTHROPIC_STOP.get(reply.finish, reply.finish),
            "stop_sequence": None,
            "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": len(reply.words)},
        }


def create_app() -> FakeUpstream:
    """For ``uvicorn tests.support.fake_upstream:create_app --factory``: a fresh fake."""
    return FakeUpstream()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve until interrupted (uvicorn handles SIGINT and SIGTERM)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args(argv)
    FakeUpstream(args.host, args.port).serve()


if __name__ == "__main__":
    main()
