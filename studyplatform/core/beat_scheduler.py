"""Celery beat's scheduler, with a tick stamp for /healthz.

The worker heartbeat only proves that a worker ran a task; with beat dead the last heartbeat
simply ages, and with the worker dead nobody could tell whether beat still publishes. This
scheduler stamps `sp:beat-tick` each time beat has published a periodic task, so /healthz can
name which of the two stopped. It is the app's default scheduler (celery.py: beat_scheduler), so
every `celery beat` uses it without a command-line flag.
"""

from __future__ import annotations

import logging

import redis
from celery.beat import PersistentScheduler

from .health import beat_tick_record

logger = logging.getLogger(__name__)


class TickStampingScheduler(PersistentScheduler):
    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        # The parent raises SchedulingError when the publish fails: only a published task counts.
        result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        try:
            beat_tick_record()
        except redis.RedisError:
            # The health stamp must never stop beat; a missing stamp already fails /healthz.
            logger.warning("could not record the beat tick for /healthz", exc_info=True)
        return result
