"""A minimal HTTP/1.1 client for the chat proxy benchmark's load: POST a JSON body to a server
on 127.0.0.1 and read the (chunked) reply, timing the first chunk that matches a pattern.

Why not httpx: the load generator runs on the same two cores as the servers it measures, and
httpx (httpcore, anyio, a cancel scope and several generator layers per chunk read) cost ~9 ms of
client CPU per 40-chunk reply here, as much as the lean relay itself. This client does one
readuntil/readexactly per chunk on the event loop's streams, nothing else. It speaks only what
the three servers of the benchmark answer (uvicorn: Content-Length or chunked bodies,
keep-alive), and only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    first_at: float | None  # perf_counter when `first` first matched, None if it never did
    ended_at: float


class LoopbackClient:
    """Keep-alive connections to one host:port, reused most recently released first."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.hostname != "127.0.0.1" or parts.scheme != "http":
            raise ValueError(f"loopback http only, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def aclose(self) -> None:
        while self.idle:
            _reader, writer = self.idle.pop()
            writer.close()

    async def post(
        self, path: str, payload: dict, *, headers: dict[str, str] | None = None, first=None
    ) -> Reply:
        """POST `payload` as JSON to prefix + `path`. A reused connection that the server
        closed while idle (uvicorn's keep-alive timeout) fails before any reply byte; such a
        request is sent again once on a new connection, as httpx does."""
        body = json.dumps(payload).encode()
        lines = [
            f"POST {self.prefix}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        while self.idle:
            reader, writer = self.idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            try:
                return await self._exchange(reader, writer, request, first)
            except _StaleConnection:
                continue
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            return await self._exchange(reader, writer, request, first)
        except _StaleConnection as exc:
            raise ConnectionError("the server closed a new connection without answering") from exc

    async def _exchange(self, reader, writer, request: bytes, first: re.Pattern | None) -> Reply:
        clean = False
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise _StaleConnection from exc
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            headers = {}
            for line in header_lines:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            chunks: list[bytes] = []
            first_at = None
            window = b""  # the end of the previous chunk, in case a match straddles two
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        break
                    data = (await reader.readexactly(size + 2))[:-2]
                    chunks.append(data)
                    if first is not None and first_at is None:
                        if first.search(window + data):
                            first_at = time.perf_counter()
                        window = data[-32:]
                keep = headers.get("connection", "").lower() != "close"
            elif "content-length" in headers:
                data = await reader.readexactly(int(headers["content-length"]))
                chunks.append(data)
                keep = headers.get("connection", "").lower() != "close"
            else:
                chunks.append(await reader.read())
                keep = False
            ended_at = time.perf_counter()
            body = b"".join(chunks)
            if first is not None and first_at is None and first.search(body):
                first_at = ended_at
            clean = keep
            return Reply(status, headers.get("content-type", ""), body, first_at, ended_at)
        finally:
            # A reply read to its end goes back to the pool; anything else (an error, a
            # timeout's cancellation mid-body) leaves the connection in an unknown state.
            if clean:
                self.idle.append((reader, writer))
            else:
                writer.close()


class _StaleConnection(Exception):
    """The connection was closed before the reply began."""
