"""Checks for /healthz: reachability (database, Redis) and liveness (worker, beat, queues).

Reachability alone said 200 with the worker dead for minutes. Three timestamps tell the rest:

- worker heartbeat (`sp:worker-heartbeat`): written by the `worker_heartbeat` task when a worker
  *runs* it, so it proves a worker is consuming the default queue;
- beat tick (`sp:beat-tick`): written by beat's scheduler (core/beat_scheduler.py) each time it
  *publishes* a periodic task, so it proves beat is scheduling, whether or not a worker runs it;
- queue backlog: the age of the oldest message waiting in each Celery queue in the broker. The
  Redis transport keeps a queue as a Redis list (LPUSH to publish, BRPOP from the tail to
  consume); every message carries the `sp-enqueued-at` header stamped at publish time (see
  `stamp_enqueue_time`), so the age is read from the messages themselves.

Each check is bounded by short socket timeouts; nothing here can hang a load balancer's probe.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import connection

HEARTBEAT_KEY = "sp:worker-heartbeat"
BEAT_TICK_KEY = "sp:beat-tick"
ENQUEUED_AT_HEADER = "sp-enqueued-at"
# Keys expire so a stopped deployment's stale stamps do not linger forever in a shared Redis;
# an hour is far beyond any limit, so expiry never turns a fresh stamp into a missing one.
STAMP_TTL_S = 3600
# The oldest messages are at the tail of the list; a redelivered message is pushed back onto the
# tail and a message with an ETA may sit behind younger ones, so look at the last few, not one.
QUEUE_SCAN = 50
# kombu's Redis transport stores priority levels 3, 6 and 9 in sibling lists "<queue>\x06\x16<n>"
# (kombu.transport.redis.PRIORITY_STEPS and Channel.sep); priority 0 uses the plain name.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
TIMEOUT_S = 2


def redis_client(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(
        url or settings.REDIS_URL, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S
    )


def stamp_enqueue_time(headers: dict[str, Any] | None) -> None:
    """Add the publish time to a task message's headers (a caller's explicit stamp is kept)."""
    if headers is not None:
        headers.setdefault(ENQUEUED_AT_HEADER, time.time())


def beat_tick_record() -> None:
    """Record that beat just published a periodic task (read by /healthz)."""
    redis_client().set(BEAT_TICK_KEY, str(time.time()), ex=STAMP_TTL_S)


def queue_limits() -> dict[str, int]:
    """Backlog limit per Celery queue: long-job queues (analysis, exports) are allowed to wait
    behind a running job; the others carry invitations, emails and alerts."""
    from studyplatform.celery import QUEUES

    long_jobs = {"analysis", "exports"}
    return {
        name: (
            settings.HEALTH_JOB_QUEUE_MAX_AGE_S
            if name in long_jobs
            else settings.HEALTH_QUEUE_MAX_AGE_S
        )
        for name in QUEUES
    }


def _check(name: str, ok: bool, **fields: Any) -> dict[str, Any]:
    return {"name": name, "ok": ok, **fields}


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "unreachable" for a health check
        return _check("database", False, error=exc.__class__.__name__)
    return _check("database", True, vendor=connection.vendor)


def _stamp_age(client: redis.Redis, key: str) -> float | None:
    raw = client.get(key)
    return round(time.time() - float(raw), 1) if raw else None


def check_stamp(client: redis.Redis, name: str, key: str, limit: float) -> dict[str, Any]:
    """A timestamp check: failing when the stamp is missing (never written, or expired) or older
    than `limit` seconds."""
    try:
        age = _stamp_age(client, key)
    except redis.RedisError as exc:
        return _check(name, False, value=None, limit=limit, error=exc.__class__.__name__)
    return _check(name, age is not None and age <= limit, value=age, limit=limit)


def _message_ready_at(raw: bytes) -> float | None:
    """When a queued message became runnable: its publish time, or its ETA if later (a task
    scheduled for tomorrow is not a backlog today). None when the message carries no stamp."""
    try:
        headers = json.loads(raw).get("headers") or {}
        ready = float(headers[ENQUEUED_AT_HEADER])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    eta = headers.get("eta")
    if eta:
        with contextlib.suppress(ValueError, TypeError):
            ready = max(ready, datetime.fromisoformat(eta).timestamp())
    return ready


def check_queue(client: redis.Redis, queue: str, limit: float) -> dict[str, Any]:
    name = f"queue_{queue}"
    try:
        with client.pipeline(transaction=False) as pipe:
            for suffix in PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
                pipe.lrange(queue + suffix, -QUEUE_SCAN, -1)
            replies = pipe.execute()
    except redis.RedisError as exc:
        return _check(name, False, value=None, limit=limit, error=exc.__class__.__name__)
    length = sum(replies[0::2])
    ready = [t for messages in replies[1::2] for t in map(_message_ready_at, messages) if t]
    oldest = round(max(0.0, time.time() - min(ready)), 1) if ready else None
    return _check(name, oldest is None or oldest <= limit, value=oldest, limit=limit, length=length)


def check_redis() -> tuple[dict[str, Any], redis.Redis | None]:
    client = redis_client()
    try:
        client.ping()
    except redis.RedisError as exc:
        return _check("redis", False, error=exc.__class__.__name__), None
    return _check("redis", True), client


def _broker_client() -> redis.Redis | None:
    """A client for the Celery broker when it is Redis (it may be a different server or database
    than REDIS_URL); None for any other broker, whose queues this check cannot read."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return redis_client(url)


def health_report() -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = {"database": check_database()}
    checks["redis"], client = check_redis()
    stamps = (
        ("worker_heartbeat", HEARTBEAT_KEY, settings.HEALTH_WORKER_MAX_AGE_S),
        ("beat_tick", BEAT_TICK_KEY, settings.HEALTH_BEAT_MAX_AGE_S),
    )
    for name, key, limit in stamps:
        if client is None:
            # Redis already failed its ping: report, do not wait for two more timeouts.
            checks[name] = _check(name, False, value=None, limit=limit, error="redis unreachable")
        else:
            checks[name] = check_stamp(client, name, key, limit)
    broker = _broker_client()
    if broker is not None:
        broker_error = None
        for queue, limit in queue_limits().items():
            if broker_error:
                # The broker already failed: report, do not wait for another timeout per queue.
                check = _check(f"queue_{queue}", False, value=None, limit=limit, error=broker_error)
            else:
                check = check_queue(broker, queue, limit)
                broker_error = check.get("error")
            checks[check["name"]] = check
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}
