"""Core periodic tasks."""

from __future__ import annotations

import time

from celery import shared_task

from .health import HEARTBEAT_KEY, redis_client


@shared_task(name="studyplatform.core.tasks.worker_heartbeat", ignore_result=True)
def worker_heartbeat() -> None:
    """Record that a worker is alive (read by /healthz)."""
    redis_client().set(HEARTBEAT_KEY, str(time.time()), ex=3600)
