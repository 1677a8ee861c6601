"""The lean relay: the smallest chat forwarder that keeps the one guarantee that costs a database
round (the participant's message durably stored, once, before the model is called), for
benchmarks/chat_proxy.py to measure the platform against on the same cores.

It is a bare ASGI app (no framework), served by the same server and worker count as the
platform. Per request ``POST /relay`` with JSON ``{"text", "client_request_id", "conversation"}``
it does one encrypted, idempotent INSERT into its own table ``relay_message`` in the same
database as the platform, then forwards the upstream's OpenAI SSE stream byte for byte with one
shared httpx.AsyncClient. A repeated ``client_request_id`` stores nothing and is answered with
JSON ``{"duplicate": true}`` (the INSERT's ON CONFLICT DO NOTHING). It has no sessions, consent,
limits, safety screen or reply log: the difference between it and the platform is what those
(and the framework) cost.

Configuration (environment, set by the benchmark): RELAY_DATABASE_URL (postgres://... or
sqlite:///path), RELAY_UPSTREAM_URL (the OpenAI base URL, .../v1), RELAY_MODEL, and
FIELD_ENCRYPTION_KEY (a Fernet key; the first one if a list). The table is created by
create_table() from the benchmark before the server starts, so that two workers never race on
CREATE TABLE.

Not part of the product: nothing in studyplatform/ imports it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import threading
from typing import Any

import httpx
from cryptography.fernet import Fernet

POSTGRES_SCHEMES = ("postgres://", "postgresql://")

_POSTGRES_DDL = """
CREATE TABLE IF NOT EXISTS relay_message (
    id bigserial PRIMARY KEY,
    client_request_id varchar(64) NOT NULL UNIQUE,
    conversation_id bigint NOT NULL,
    content text NOT NULL,
    created_at timestamptz NOT NULL
)"""
_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS relay_message (
    id integer PRIMARY KEY AUTOINCREMENT,
    client_request_id varchar(64) NOT NULL UNIQUE,
    conversation_id integer NOT NULL,
    content text NOT NULL,
    created_at text NOT NULL
)"""
_INSERT_PG = (
    "INSERT INTO relay_message (client_request_id, conversation_id, content, created_at) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (client_request_id) DO NOTHING RETURNING id"
)
_INSERT_SQLITE = (
    "INSERT INTO relay_message (client_request_id, conversation_id, content, created_at) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (client_request_id) DO NOTHING RETURNING id"
)


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def create_table(url: str) -> None:
    """Create relay_message in the database at `url` (PostgreSQL or sqlite:///path)."""
    if url.startswith(POSTGRES_SCHEMES):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_POSTGRES_DDL)
        return
    with sqlite3.connect(sqlite_path(url)) as conn:
        conn.execute(_SQLITE_DDL)


def count_rows(url: str) -> int:
    """Messages the relay stored (the benchmark's sanity check that it did its INSERTs)."""
    if url.startswith(POSTGRES_SCHEMES):
        import psycopg

        with psycopg.connect(url) as conn:
            return conn.execute("SELECT count(*) FROM relay_message").fetchone()[0]
    with sqlite3.connect(sqlite_path(url)) as conn:
        return conn.execute("SELECT count(*) FROM relay_message").fetchone()[0]


class _Store:
    """One idempotent INSERT per message. PostgreSQL: an async connection pool (no thread hop).
    SQLite has no async driver here, so its one connection runs in a worker thread, as Django's
    would; writes are serialised by SQLite anyway, and the lock keeps the connection to one
    thread at a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool = None
        self.sqlite: sqlite3.Connection | None = None
        self.lock = threading.Lock()

    async def open(self) -> None:
        if self.url.startswith(POSTGRES_SCHEMES):
            from psycopg_pool import AsyncConnectionPool

            # Autocommit: the INSERT is its own transaction, committed when it returns.
            self.pool = AsyncConnectionPool(
                self.url, min_size=2, max_size=20, kwargs={"autocommit": True}, open=False
            )
            await self.pool.open(wait=True, timeout=30)
        else:
            conn = sqlite3.connect(
                sqlite_path(self.url), check_same_thread=False, isolation_level=None, timeout=20
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self.sqlite = conn

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.sqlite is not None:
            self.sqlite.close()

    async def insert(self, request_id: str, conversation: int, content: str) -> bool:
        """Store the message; False when this request id was already stored."""
        now = dt.datetime.now(dt.UTC)
        if self.pool is not None:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(_INSERT_PG, (request_id, conversation, content, now))
                return await cursor.fetchone() is not None
        return await asyncio.to_thread(self._insert_sqlite, request_id, conversation, content, now)

    def _insert_sqlite(self, request_id: str, conversation: int, content: str, now) -> bool:
        with self.lock:
            row = self.sqlite.execute(
                _INSERT_SQLITE, (request_id, conversation, content, now.isoformat())
            ).fetchone()
        return row is not None


class LeanRelay:
    def __init__(self) -> None:
        keys = os.environ.get("FIELD_ENCRYPTION_KEY", "")
        self.fernet = Fernet(keys.split(",")[0].encode()) if keys else None
        self.upstream = os.environ.get("RELAY_UPSTREAM_URL", "").rstrip("/")
        self.model = os.environ.get("RELAY_MODEL", "bench-model")
        self.store = _Store(os.environ.get("RELAY_DATABASE_URL", ""))
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.fernet is None or not self.upstream or not self.store.url:
                        raise RuntimeError(
                            "RELAY_DATABASE_URL, RELAY_UPSTREAM_URL and FIELD_ENCRYPTION_KEY "
                            "must be set"
                        )
                    await self.store.open()
                    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
                    self.client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0))
                except Exception as exc:  # reported to the server, which then exits
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await self.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope, receive, send) -> None:
        if scope["method"] == "GET" and scope["path"] == "/healthz":
            await _json(send, 200, {"ok": True})
            return
        if scope["method"] != "POST" or scope["path"] != "/relay":
            await _json(send, 404, {"error": "not found"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            data = json.loads(body)
            text = str(data["text"])
            request_id = str(data["client_request_id"])[:64]
            conversation = int(data["conversation"])
        except (ValueError, KeyError, TypeError):
            await _json(send, 400, {"error": "text, client_request_id and conversation needed"})
            return
        stored = await self.store.insert(
            request_id, conversation, self.fernet.encrypt(text.encode()).decode()
        )
        if not stored:
            await _json(send, 200, {"duplicate": True})
            return
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with self.client.stream(
            "POST", f"{self.upstream}/chat/completions", json=payload
        ) as upstream:
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status_code,
                    "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache"),
                    ],
                }
            )
            async for chunk in upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _json(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


app = LeanRelay()
