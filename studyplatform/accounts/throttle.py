"""Fixed-window request counters in Redis (Django's cache), for account emails and resets.

Keys never hold an address in clear: callers pass `lookup_digest` values or client digests.
"""

from __future__ import annotations

from django.core.cache import cache

HOUR_S = 60 * 60


def over_limit(key: str, limit: int, window_s: int = HOUR_S) -> bool:
    """Count one request under `key`; True when this request is beyond `limit` in the window."""
    key = f"throttle:{key}"
    cache.add(key, 0, timeout=window_s)
    try:
        count = cache.incr(key)
    except ValueError:  # the key expired between add and incr
        cache.set(key, 1, timeout=window_s)
        count = 1
    return count > limit
