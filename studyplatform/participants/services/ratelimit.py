"""Fixed-window counters in the shared cache (Redis), for the participant-facing forms.

Keys hold digests only (of an address, of a client IP), never the raw value.
"""

from __future__ import annotations

from django.core.cache import cache


def rate_limited(key: str, limit: int, window_s: int) -> bool:
    """Count one event under `key`; True when this event is over `limit` in the window."""
    cache.add(key, 0, timeout=window_s)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window_s)
        count = 1
    return count > limit
