"""Reachability checks for /healthz: database, Redis, and the last worker heartbeat."""

from __future__ import annotations

import time
from typing import Any

import redis
from django.conf import settings
from django.db import connection

HEARTBEAT_KEY = "sp:worker-heartbeat"


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "unreachable" for a health check
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True, "vendor": connection.vendor}


def check_redis() -> dict[str, Any]:
    try:
        client = redis_client()
        client.ping()
        beat = client.get(HEARTBEAT_KEY)
    except redis.RedisError as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    age = round(time.time() - float(beat), 1) if beat else None
    return {"ok": True, "worker_heartbeat_age_s": age}


def health_report() -> dict[str, Any]:
    checks = {"database": check_database(), "redis": check_redis()}
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}
