"""The stop flags of every streaming reply on an event loop are read together: one MGET per
tick for all of them, each stream stopped only by its own flag."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync

from studyplatform.chat import streaming
from studyplatform.chat.streaming import StopWatcher, cancel_key
from studyplatform.core.redis_client import redis_sync

IDS = (910001, 910002, 910003)


def test_one_mget_watches_every_stream_and_stops_only_the_flagged_one(monkeypatch):
    calls = []
    real = streaming.redis_async

    class Counting:
        def __init__(self, client):
            self.client = client

        async def mget(self, keys):
            calls.append(sorted(keys))
            return await self.client.mget(keys)

    monkeypatch.setattr(streaming, "redis_async", lambda: Counting(real()))
    monkeypatch.setattr(streaming, "CANCEL_POLL_S", 0.01)

    async def go():
        watcher = StopWatcher()
        flags = [watcher.watch(i) for i in IDS]
        # when: the participant of the second reply clicks Stop
        redis_sync().set(cancel_key(IDS[1]), "1", ex=60)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if flags[1].stopped:
                break
        state = [flag.stopped for flag in flags]
        for flag in flags:
            watcher.unwatch(flag)
        await asyncio.sleep(0.05)
        return state, watcher._task

    try:
        state, task = async_to_sync(go)()
    finally:
        redis_sync().delete(cancel_key(IDS[1]))
    # then: only that reply stops; every read asked for all three flags at once
    assert state == [False, True, False]
    assert calls and all(keys == sorted(cancel_key(i) for i in IDS) for keys in calls)
    # and nothing is left polling once no reply streams
    assert task is None


def test_a_redis_failure_reaches_every_watched_stream(monkeypatch):
    class Broken:
        async def mget(self, keys):
            from redis.exceptions import ConnectionError as RedisConnectionError

            raise RedisConnectionError("gone")

    monkeypatch.setattr(streaming, "redis_async", lambda: Broken())
    monkeypatch.setattr(streaming, "CANCEL_POLL_S", 0.01)

    async def go():
        watcher = StopWatcher()
        flags = [watcher.watch(i) for i in IDS[:2]]
        for _ in range(100):
            await asyncio.sleep(0.01)
            if all(flag.error is not None for flag in flags):
                break
        errors = [type(flag.error).__name__ for flag in flags]
        for flag in flags:
            watcher.unwatch(flag)
        return errors

    assert async_to_sync(go)() == ["ConnectionError", "ConnectionError"]
