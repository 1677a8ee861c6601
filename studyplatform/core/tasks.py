"""Core periodic tasks."""

from __future__ import annotations

import time

from celery import shared_task

from .health import HEARTBEAT_KEY, STAMP_TTL_S, redis_client


@shared_task(name="studyplatform.core.tasks.worker_heartbeat", ignore_result=True)
def worker_heartbeat() -> None:
    """Record that a worker ran a task (read by /healthz; beat's own stamp is separate)."""
    redis_client().set(HEARTBEAT_KEY, str(time.time()), ex=STAMP_TTL_S)


@shared_task(name="studyplatform.core.tasks.job_lease_sweep", ignore_result=True)
def job_lease_sweep() -> dict[str, int]:
    """Re-dispatch analysis runs, exports and downloads whose worker died; fail those out of
    attempts (studyplatform/core/leases.py)."""
    from .leases import leases_sweep

    return leases_sweep()
