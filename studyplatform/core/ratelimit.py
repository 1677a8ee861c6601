"""Fixed-window request counters in the shared cache (Redis), for forms that send email or take
guesses: participant sign-in and enrollment, researcher sign-up, verification and resets.

Keys hold digests only (of an address, of a client address), never the raw value.
"""

from __future__ import annotations

from django.core.cache import cache

HOUR_S = 60 * 60


def rate_limited(key: str, limit: int, window_s: int = HOUR_S) -> bool:
    """Count one event under `key`; True when this event is over `limit` in the window."""
    key = f"ratelimit:{key}"
    cache.add(key, 0, timeout=window_s)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window_s)
        count = 1
    return count > limit
