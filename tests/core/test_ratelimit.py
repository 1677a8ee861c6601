"""The form rate limiter (studyplatform/core/ratelimit.py, django-ratelimit underneath): what the
sign-in, enrollment, sign-up and reset services rely on. Their own pages and messages are tested
in tests/participants, tests/security and tests/console."""

from __future__ import annotations

import types

import pytest
import redis

from studyplatform.core.ratelimit import rate_limited


class Clock:
    """Stands in for the `time` module django-ratelimit reads its windows from."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(1_800_000_000.0)
    monkeypatch.setattr("django_ratelimit.core.time", types.SimpleNamespace(time=fake.time))
    return fake


def test_it_allows_the_limit_and_refuses_the_next_event(clock):
    # given: a limit of three an hour
    # when: four events are counted under one key
    results = [rate_limited("signin:client:abc", 3, 3600) for _ in range(4)]
    # then: the fourth is over the limit
    assert results == [False, False, False, True]


def test_each_key_and_each_limit_count_separately(clock):
    # given: one key at its limit
    assert [rate_limited("signin:client:abc", 1) for _ in range(2)] == [False, True]
    # then: another key (another client, or another form's group) starts from zero
    assert rate_limited("signin:client:xyz", 1) is False
    assert rate_limited("enroll:client:abc", 1) is False


def test_a_new_window_starts_counting_from_zero(clock):
    # given: a key over its limit
    assert [rate_limited("reset-email:d1", 1, 60) for _ in range(2)] == [False, True]
    # when: the window has passed (a window is at most window_s long, whatever its offset)
    clock.now += 61
    # then: the key is allowed again, once
    assert [rate_limited("reset-email:d1", 1, 60) for _ in range(2)] == [False, True]


def test_counters_expire_with_their_window(clock, settings):
    # given: one counted event (shared test Redis, flushed before each test)
    rate_limited("signup-client:k", 5, 60)
    # then: every counter the limiter wrote expires soon after its window (never lives forever)
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    keys = client.keys("*")
    assert keys, "the limiter wrote no counter to the cache"
    assert all(0 < client.ttl(k) <= 60 + 5 for k in keys)
    # and no key holds the raw key string (digests are counted, but the cache key is hashed too)
    assert not any(b"signup-client:k" in k for k in keys)


def test_it_fails_closed_when_the_cache_is_down(throwaway_redis):
    # given: the cache's Redis is gone
    throwaway_redis["kill"]()
    # then: counting raises instead of letting events through uncounted
    with pytest.raises(redis.exceptions.ConnectionError):
        rate_limited("signin:client:abc", 3)


def test_it_counts_nothing_when_rate_limiting_is_turned_off(settings, clock):
    settings.RATELIMIT_ENABLE = False
    assert [rate_limited("signin:client:abc", 1) for _ in range(3)] == [False, False, False]
