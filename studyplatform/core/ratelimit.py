"""Fixed-window request counters in the shared cache (Redis), for forms that send email or take
guesses: participant sign-in and enrollment, researcher sign-up, verification and resets.

The counting is django-ratelimit's (`get_usage`); this module only adapts its request-shaped
interface to the services. The limits are checked inside service functions, not by the
`@ratelimit` view decorator, because one service serves the HTML page and the API alike and
because the keys are digests the service computes (of an address, of a client address: never
the raw value), which a decorator reading the request could not know.

Windows are django-ratelimit's: aligned to the clock, each key's window shifted by a fixed
per-key offset, and each counter kept a few seconds past its window, so a counter never
outlives the window it counts in (the hand-written counter it replaced could, when a key
expired between its ADD and INCR).
"""

from __future__ import annotations

from django_ratelimit.core import get_usage

HOUR_S = 60 * 60


def rate_limited(key: str, limit: int, window_s: int = HOUR_S) -> bool:
    """Count one event under `key`; True when this event is over `limit` in the window.

    The part of `key` before the first ':' names the group (e.g. "signin"), the whole key is the
    counted value. A cache outage raises (the caller's form fails closed rather than letting
    unmetered email or guesses through); settings.RATELIMIT_ENABLE = False turns counting off.
    """
    usage = get_usage(
        None,  # no request: the key below is already the value to count, not read from one
        group=key.partition(":")[0],
        key=lambda _group, _request: key,
        rate=(limit, window_s),
        increment=True,
    )
    return usage is not None and usage["should_limit"]
