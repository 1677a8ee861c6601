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
