"""The Celery application: JSON only, global time limits, named queues, one beat schedule."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import before_task_publish
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyplatform.settings")

app = Celery("studyplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")

# default: notifications and invitations; chat: post-processing of messages;
# analysis and exports: long jobs, run by low-concurrency workers of their own.
QUEUES = ("default", "chat", "analysis", "exports")
# Each queue gets its own exchange and routing key so a message reaches exactly one queue.
app.conf.task_queues = [Queue(name, Exchange(name), routing_key=name) for name in QUEUES]
app.conf.task_default_queue = "default"
app.conf.task_default_exchange = "default"
app.conf.task_default_routing_key = "default"
app.conf.task_routes = {
    # Safety emails, retries and moderation share the chat workers (as when they were chat
    # tasks): they are short and participant-facing work waits on none of them. The digest
    # stays on the default queue, where it ran before the move.
    "studyplatform.safety.tasks.safety_digest": {"queue": "default"},
    "studyplatform.safety.tasks.*": {"queue": "chat"},
    "studyplatform.chat.tasks.*": {"queue": "chat"},
    # Recomputing a participant's usage day after a message is chat post-processing.
    "studyplatform.compliance.tasks.compliance_refresh": {"queue": "chat"},
    "analysis.tasks.*": {"queue": "analysis"},
    # Classification runs are long, batched jobs like analyses: the same low-concurrency workers.
    "studyplatform.classifiers.tasks.*": {"queue": "analysis"},
    "studyplatform.exports.tasks.*": {"queue": "exports"},
}
app.conf.broker_connection_retry_on_startup = True
# Beat stamps each publish for /healthz (core/beat_scheduler.py); still a PersistentScheduler.
app.conf.beat_scheduler = "studyplatform.core.beat_scheduler:TickStampingScheduler"


@before_task_publish.connect
def _stamp_enqueue_time(headers=None, **kwargs) -> None:
    # Celery's messages carry no publish time; /healthz measures queue backlog from this stamp
    # (core/health.py). Runs in every publishing process: web, worker and beat.
    from studyplatform.core.health import stamp_enqueue_time

    stamp_enqueue_time(headers)


def _load_beat_schedule() -> None:
    from studyplatform.beat import BEAT_SCHEDULE

    app.conf.beat_schedule = BEAT_SCHEDULE


_load_beat_schedule()
app.autodiscover_tasks()
