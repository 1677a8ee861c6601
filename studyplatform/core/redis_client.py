"""One Redis connection pool per process for hot paths (chat rate limits, stream tokens, stop
flags). Django's cache keeps a client per thread, and ASGI runs each request's sync code in a
fresh thread, so the cache would open a new connection per request."""

from __future__ import annotations

import threading

import redis
import redis.asyncio as aredis
from django.conf import settings

_lock = threading.Lock()
_sync: dict[str, redis.Redis] = {}
_async: dict[tuple[str, int], aredis.Redis] = {}


def redis_sync() -> redis.Redis:
    url = settings.REDIS_URL
    client = _sync.get(url)
    if client is None:
        with _lock:
            client = _sync.setdefault(url, redis.Redis.from_url(url))
    return client


def redis_async() -> aredis.Redis:
    """A client bound to the running event loop (asyncio clients cannot cross loops)."""
    import asyncio

    key = (settings.REDIS_URL, id(asyncio.get_running_loop()))
    client = _async.get(key)
    if client is None:
        client = _async[key] = aredis.Redis.from_url(settings.REDIS_URL)
    return client
