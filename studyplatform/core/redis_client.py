"""One Redis connection pool per process for hot paths (chat rate limits, stream tokens, stop
flags). Django's cache keeps a client per thread, and ASGI runs each request's sync code in a
fresh thread, so the cache would open a new connection per request."""

from __future__ import annotations

import threading

import redis
import redis.asyncio as aredis
from django.conf import settings

# Connections per pool, and how long a command waits for one when all are busy. redis-py's
# default pool holds 100 and fails the command at once when they are all in use: at 40 new
# messages a second a web process has a few hundred replies streaming, each polling its stop
# flag, and the benchmark saw replies fail with "Too many connections" (issue 19). A blocking
# pool makes a burst wait a moment instead; a real outage still fails after the timeout.
POOL_MAX_CONNECTIONS = 400
POOL_TIMEOUT_S = 5

_lock = threading.Lock()
_sync: dict[str, redis.Redis] = {}
_async: dict[tuple[str, int], aredis.Redis] = {}


def redis_sync() -> redis.Redis:
    url = settings.REDIS_URL
    client = _sync.get(url)
    if client is None:
        with _lock:
            pool = redis.BlockingConnectionPool.from_url(
                url, max_connections=POOL_MAX_CONNECTIONS, timeout=POOL_TIMEOUT_S
            )
            client = _sync.setdefault(url, redis.Redis(connection_pool=pool))
    return client


def redis_async() -> aredis.Redis:
    """A client bound to the running event loop (asyncio clients cannot cross loops)."""
    import asyncio

    key = (settings.REDIS_URL, id(asyncio.get_running_loop()))
    client = _async.get(key)
    if client is None:
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=POOL_MAX_CONNECTIONS, timeout=POOL_TIMEOUT_S
        )
        client = _async[key] = aredis.Redis(connection_pool=pool)
    return client


class InFlight:
    """Commands written to Redis whose replies are read later (`result()`): a pipeline split
    in two, so that the caller does other I/O (a database query) while Redis answers instead
    of waiting for one round trip after the other.

    The connection is the sync pool's, held until the replies are read; replies left unread
    (`discard()`, or a failure while reading them) close it, so they can never reach the
    connection's next user. No retry: a failure raises RedisError, and the caller decides
    what to do without the replies."""

    def __init__(self, client: redis.Redis, commands: list[tuple]) -> None:
        self._client = client
        self._names = [command[0] for command in commands]
        pool = client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(connection.pack_commands(commands))
        except BaseException:
            self._drop(connection)
            raise
        self._connection = connection

    def result(self) -> list:
        """The replies in order, each through the client's response callbacks (what
        pipeline.execute() would return). Once only. Raises RedisError."""
        connection, self._connection = self._connection, None
        if connection is None:
            raise RuntimeError("these replies were read or discarded already")
        try:
            replies = [self._client.parse_response(connection, name) for name in self._names]
        except BaseException:
            self._drop(connection)
            raise
        self._client.connection_pool.release(connection)
        return replies

    def discard(self) -> None:
        """Give up on the replies (the caller failed before it needed them)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._drop(connection)

    def _drop(self, connection) -> None:
        connection.disconnect()
        self._client.connection_pool.release(connection)
