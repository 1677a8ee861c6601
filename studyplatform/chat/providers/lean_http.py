"""A minimal HTTP/1.1 client for one thing: POST a JSON body, read a streamed response body.

Why it exists: the chat reply's upstream stream is read once per token, and through httpx each
read passes httpcore's connection and stream wrappers and anyio's cancel scopes (the profile put
that read path at ~6.8 ms of the web process's CPU for a 40-token reply, most of relaying it).
Here a read is one `StreamReader.read` under one `asyncio.timeout` and the chunked framing is
parsed from a byte buffer, so a token costs a few microseconds of our own code.

What it keeps from httpx, because the provider relies on it: the connect and read timeouts of
the arm (Timeouts.connect for opening the connection, Timeouts.read for every silence, the
request write included), TLS with httpx's own default context (certifi roots, SSL_CERT_FILE),
keep-alive connections reused per event loop, and failures reported with the same wording
(`ProviderError`s, as openai_compat.translate_httpx_error words httpx's). What it does not do:
proxies (the provider goes through httpx when one applies, see OpenAICompatProvider),
redirects (never followed, like httpx's default: the endpoint registry decides the only host a
call may go to, and a redirect must not send the key elsewhere), compression (it asks for
`identity`), HTTP/2.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from .base import ProviderError

MAX_HEAD_BYTES = 64 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_CHUNK_LINE_BYTES = 4096  # a chunk's size line with any extensions
READ_SIZE = 64 * 1024
# Idle connections older than this are closed rather than reused: servers drop idle keep-alive
# connections after a few seconds (uvicorn 5 s, nginx 75 s) and a dead one costs a retry.
IDLE_MAX_S = 30.0
IDLE_PER_ORIGIN = 64

_ssl_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi roots, or SSL_CERT_FILE/SSL_CERT_DIR), built
    once: building one loads the CA bundle, ~10 ms."""
    global _ssl_context
    if _ssl_context is None:
        import httpx

        context = httpx.create_ssl_context()
        context.set_alpn_protocols(["http/1.1"])
        _ssl_context = context
    return _ssl_context


class Origin:
    """scheme, host, port and the request target of one URL."""

    __slots__ = ("host", "host_header", "port", "scheme", "target")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderError(f"unsupported upstream URL scheme {parts.scheme!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        default = 443 if parts.scheme == "https" else 80
        self.port = parts.port or default
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default else f"{host}:{self.port}"

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


class _Connection:
    __slots__ = ("idle_since", "reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.reused = False

    def usable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.idle_since < IDLE_MAX_S
        )

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Idle keep-alive connections of one event loop, by origin."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}

    async def connect(
        self, origin: Origin, connect_timeout: float, *, reuse: bool = True
    ) -> _Connection:
        idle = self._idle.get(origin.key) if reuse else None
        while idle:
            connection = idle.pop()
            if connection.usable():
                connection.reused = True
                return connection
            connection.close()
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(
                    origin.host,
                    origin.port,
                    ssl=ssl_context() if origin.scheme == "https" else None,
                    server_hostname=origin.host if origin.scheme == "https" else None,
                    limit=READ_SIZE,
                )
        except TimeoutError:
            raise ProviderError("upstream connect timeout", transient=True) from None
        except OSError as exc:  # refused, unreachable, DNS, TLS verification (ssl.SSLError)
            raise ProviderError(f"connection to upstream failed: {exc!r}", transient=True) from exc
        return _Connection(reader, writer)

    def release(self, origin: Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(origin.key, [])
        connection.idle_since = time.monotonic()
        if len(idle) >= IDLE_PER_ORIGIN or not connection.usable():
            connection.close()
            return
        idle.append(connection)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before it answered."""


class Response:
    """One response: status, reason, lower-cased headers, and its body read by `aiter_body`.

    Use as an async context manager: the connection goes back to the pool only when the body
    was read to its end; anything else (an error, a cancellation, the caller stopping early)
    closes it.
    """

    def __init__(self, pool: Pool, origin: Origin, connection: _Connection, read_timeout: float):
        self._pool = pool
        self._origin = origin
        self._connection = connection
        self._read_timeout = read_timeout
        self._buffer = b""
        self._complete = False
        self._keep_alive = True
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}

    async def _fill(self) -> bool:
        """Read more bytes into the buffer; False at the end of the connection."""
        try:
            async with asyncio.timeout(self._read_timeout):
                data = await self._connection.reader.read(READ_SIZE)
        except TimeoutError:
            raise ProviderError("upstream read timeout", transient=True) from None
        except OSError as exc:
            raise ProviderError(
                f"upstream closed the stream early: {exc!r}", transient=True
            ) from exc
        if not data:
            return False
        self._buffer += data
        return True

    async def _read_head(self) -> None:
        while True:
            while (end := self._buffer.find(b"\r\n\r\n")) < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise ProviderError("upstream sent an oversized response head", transient=True)
                if not await self._fill():
                    if not self._buffer and self._connection.reused:
                        raise _StaleConnection
                    raise ProviderError(
                        "upstream closed the stream early: no response", transient=True
                    )
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            lines = head.decode("latin-1").split("\r\n")
            status_line = lines[0].split(" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
                raise ProviderError(f"upstream sent a malformed status line: {lines[0][:80]!r}")
            try:
                status = int(status_line[1])
            except ValueError:
                raise ProviderError(
                    f"upstream sent a malformed status line: {lines[0][:80]!r}"
                ) from None
            if 100 <= status < 200:
                continue  # interim (100 Continue, 103 Early Hints): the real one follows
            self.status = status
            self.reason = status_line[2] if len(status_line) > 2 else ""
            for line in lines[1:]:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
            if status_line[0] == "HTTP/1.0" or "close" in self.headers.get("connection", ""):
                self._keep_alive = False
            return

    def aiter_body(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (chunked framing removed)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return self._chunked()  # not wrapped: one generator layer less per token
        return self._delimited()

    def shorten_read_timeout(self, seconds: float) -> None:
        """Wait at most `seconds` for what is left (the end of a body whose content is
        complete: only the connection's reuse depends on it)."""
        self._read_timeout = min(self._read_timeout, seconds)

    async def _delimited(self) -> AsyncIterator[bytes]:
        if "content-length" in self.headers:
            try:
                remaining = int(self.headers["content-length"])
            except ValueError:
                raise ProviderError("upstream sent a malformed content-length") from None
            while remaining > 0:
                if not self._buffer and not await self._fill():
                    raise ProviderError("upstream closed the stream early", transient=True)
                data, self._buffer = self._buffer[:remaining], self._buffer[remaining:]
                remaining -= len(data)
                yield data
            self._complete = True
        else:
            # Delimited by the connection's end: never reusable.
            self._keep_alive = False
            while self._buffer or await self._fill():
                data, self._buffer = self._buffer, b""
                yield data
            self._complete = True

    def _take_chunk(self) -> bytes | None:
        """The next chunk's data if the buffer holds all of it (b"" for the last, empty chunk
        once its trailers are buffered too: the body is then complete), else None."""
        cut = self._buffer.find(b"\r\n")
        if cut < 0:
            if len(self._buffer) > MAX_CHUNK_LINE_BYTES:
                raise ProviderError("upstream sent a malformed chunk size line", transient=True)
            return None
        try:
            size = int(self._buffer[:cut].split(b";", 1)[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0:
            raise ProviderError(
                f"upstream sent a malformed chunk size: {self._buffer[:cut][:40]!r}",
                transient=True,
            )
        if size == 0:
            # Trailers, if any, end with an empty line.
            line = cut + 2
            while (line_end := self._buffer.find(b"\r\n", line)) != line:
                if line_end < 0:
                    if len(self._buffer) - cut > MAX_HEAD_BYTES:
                        raise ProviderError("upstream sent oversized trailers", transient=True)
                    return None
                line = line_end + 2
            self._buffer = self._buffer[line + 2 :]
            self._complete = True
            return b""
        start = cut + 2
        if len(self._buffer) < start + size + 2:
            return None
        data = self._buffer[start : start + size]
        self._buffer = self._buffer[start + size + 2 :]
        return data

    async def _chunked(self) -> AsyncIterator[bytes]:
        # Every chunk already buffered comes out in one piece: when tokens arrive faster than
        # the reader asks (the reply stream paces its frames), one read, one parse and one
        # frame carry several of them.
        while True:
            pieces = []
            while (data := self._take_chunk()) is not None:
                if self._complete:
                    if pieces:
                        yield b"".join(pieces)
                    return
                pieces.append(data)
            if pieces:
                yield b"".join(pieces)
            elif not await self._fill():
                raise ProviderError(
                    "upstream closed the stream early: incomplete chunked read", transient=True
                )

    async def aread(self, limit: int = MAX_ERROR_BODY_BYTES) -> bytes:
        """The whole body (an error's), at most `limit` bytes kept."""
        parts: list[bytes] = []
        kept = 0
        async for data in self.aiter_body():
            if kept < limit:
                parts.append(data[: limit - kept])
                kept += len(parts[-1])
        return b"".join(parts)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._complete and self._keep_alive and not self._buffer:
            self._pool.release(self._origin, self._connection)
        else:
            self._connection.close()


async def post_stream(
    pool: Pool,
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    connect_timeout: float,
    read_timeout: float,
) -> Response:
    """Send the POST and read the response head; the body is read from the Response.

    A reused keep-alive connection that turns out closed before any response byte is retried
    once on a new connection (the server never read the request), as httpcore does.
    """
    origin = Origin(url)
    head = [f"POST {origin.target} HTTP/1.1", f"Host: {origin.host_header}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head += [f"Content-Length: {len(body)}", "Accept-Encoding: identity", "", ""]
    request = "\r\n".join(head).encode("latin-1") + body
    for attempt in range(2):
        connection = await pool.connect(origin, connect_timeout, reuse=attempt == 0)
        response = Response(pool, origin, connection, read_timeout)
        try:
            connection.writer.write(request)
            try:
                async with asyncio.timeout(read_timeout):
                    await connection.writer.drain()
            except TimeoutError:
                raise ProviderError("upstream write timeout", transient=True) from None
            except OSError as exc:
                if connection.reused:
                    raise _StaleConnection from exc
                raise ProviderError(
                    f"connection to upstream failed: {exc!r}", transient=True
                ) from exc
            await response._read_head()
        except _StaleConnection:
            connection.close()
            continue
        except BaseException:
            connection.close()
            raise
        return response
    raise ProviderError("connection to upstream failed: closed before answering", transient=True)
