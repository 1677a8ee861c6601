"""The embedded Redis of `make run` keeps its data across a restart; the tests' one keeps none."""

from __future__ import annotations

import redis

from studyplatform.core.embedded_redis import start_embedded_redis, stop_embedded_redis


def test_embedded_redis_with_a_data_dir_keeps_keys_across_a_restart(tmp_path):
    # given: a persistent server holding a queued message
    url, proc = start_embedded_redis(data_dir=tmp_path)
    try:
        redis.Redis.from_url(url).lpush("default", "queued-task")
    finally:
        stop_embedded_redis(proc)
    assert (tmp_path / "appendonly.aof").stat().st_size > 0
    # when: a new server starts on the same directory (on another port, as `make run` does)
    url, proc = start_embedded_redis(data_dir=tmp_path)
    try:
        # then: the message is still queued
        assert redis.Redis.from_url(url).lrange("default", 0, -1) == [b"queued-task"]
    finally:
        stop_embedded_redis(proc)


def test_embedded_redis_without_a_data_dir_writes_nothing_to_disk():
    # given: the throwaway server the tests use
    url, proc = start_embedded_redis()
    client = redis.Redis.from_url(url)
    try:
        # when / then: no append-only file and no snapshots are configured
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("save") == {"save": ""}
    finally:
        stop_embedded_redis(proc)


def test_persistent_embedded_redis_never_evicts_broker_keys(tmp_path):
    url, proc = start_embedded_redis(data_dir=tmp_path)
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        stop_embedded_redis(proc)
