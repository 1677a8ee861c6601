"""Sessions kept in the database and read from Redis (SESSION_ENGINE).

Django's cached_db engine, with its cache replaced by the process's shared Redis pool
(core.redis_client): every request loads its session, and a Redis GET costs a fraction of the
database SELECT it replaces (the chat send's largest single statement before the model call,
issue 19). Django's own cache is not used because it keeps a client per thread, and ASGI runs
each request's sync code in a new thread: a new Redis connection per request.

The database stays the record (a lost Redis key is re-read from it); a logout or session
rotation deletes the Redis copy too, and raises if Redis cannot be reached rather than leave a
signed-out session readable.
"""

from __future__ import annotations

import contextlib
import json
import logging

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from redis.exceptions import RedisError

from .redis_client import redis_async, redis_sync

logger = logging.getLogger(__name__)

# The Redis copy lives at most this long, whatever the session's own age: should writing a
# changed session to Redis fail and removing the old copy fail too, the stale copy is read for
# at most this long (the database has the change).
REDIS_COPY_MAX_S = 3600


def _ttl(timeout) -> int:
    return REDIS_COPY_MAX_S if timeout is None else min(int(timeout), REDIS_COPY_MAX_S)


class _RedisSessionCache:
    """The part of Django's cache API that cached_db uses, on the shared Redis pools. Session
    data is JSON (SESSION_SERIALIZER is Django's JSON serializer), so JSON here too. Reads that
    fail fall back to the database (cached_db); a failed write removes the old copy."""

    def get(self, key: str, default=None):
        raw = redis_sync().get(key)
        return default if raw is None else json.loads(raw)

    def set(self, key: str, value, timeout) -> None:
        try:
            if timeout is not None and timeout <= 0:
                redis_sync().delete(key)
            else:
                redis_sync().set(key, json.dumps(value), ex=_ttl(timeout))
        except RedisError:
            logger.warning("session copy %s not written to Redis; removing it", key[-6:])
            with contextlib.suppress(RedisError):
                redis_sync().delete(key)

    def delete(self, key: str) -> None:
        redis_sync().delete(key)

    def __contains__(self, key: str) -> bool:
        return bool(redis_sync().exists(key))

    async def aget(self, key: str, default=None):
        raw = await redis_async().get(key)
        return default if raw is None else json.loads(raw)

    async def aset(self, key: str, value, timeout) -> None:
        try:
            if timeout is not None and timeout <= 0:
                await redis_async().delete(key)
            else:
                await redis_async().set(key, json.dumps(value), ex=_ttl(timeout))
        except RedisError:
            logger.warning("session copy %s not written to Redis; removing it", key[-6:])
            with contextlib.suppress(RedisError):
                await redis_async().delete(key)

    async def adelete(self, key: str) -> None:
        await redis_async().delete(key)


_CACHE = _RedisSessionCache()


class SessionStore(CachedDBStore):
    cache_key_prefix = "sp:session:"

    def __init__(self, session_key=None):
        super().__init__(session_key)
        self._cache = _CACHE

    def unread_copy_key(self) -> str | None:
        """The Redis key of this session's copy when the request has a session whose data is
        not loaded yet (a caller may read the copy itself, in a round trip of its own, and
        hand it over with take_copy); None otherwise."""
        if self.session_key is None or hasattr(self, "_session_cache"):
            return None
        return self.cache_key

    def take_copy(self, raw: bytes) -> bool:
        """Use `raw`, the session's Redis copy as the caller read it, as the session's data:
        what load() does when it finds the copy. False (nothing changed, load() will run)
        when it is not a JSON object."""
        if hasattr(self, "_session_cache"):
            return False
        try:
            data = json.loads(raw)
        except ValueError:
            return False
        if not isinstance(data, dict):
            return False
        self._session_cache = data
        return True

    def delete(self, session_key=None):
        # The Redis copy first: if Redis cannot be reached this raises before the database row
        # goes, so a sign-out either fully happens or visibly fails (never a signed-out
        # session still readable from Redis).
        key = session_key or self.session_key
        if key:
            self._cache.delete(self.cache_key_prefix + key)
        super().delete(session_key)

    async def adelete(self, session_key=None):
        key = session_key or self.session_key
        if key:
            await self._cache.adelete(self.cache_key_prefix + key)
        await super().adelete(session_key)
