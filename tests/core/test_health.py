"""/healthz reports reachability (database, Redis) and liveness: the worker heartbeat, beat's
last tick and the age of the oldest message waiting in each Celery queue, each as a check."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from celery.beat import ScheduleEntry
from django.conf import settings as django_settings

from studyplatform.celery import app as celery_app
from studyplatform.core.beat_scheduler import TickStampingScheduler
from studyplatform.core.health import (
    BEAT_TICK_KEY,
    ENQUEUED_AT_HEADER,
    HEARTBEAT_KEY,
    beat_tick_record,
)
from studyplatform.core.tasks import worker_heartbeat

pytestmark = [
    pytest.mark.django_db,
    # send_task always publishes to the broker, which is what these tests want.
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]


def _redis():
    return redis.Redis.from_url(django_settings.REDIS_URL)


def _all_alive():
    worker_heartbeat()
    beat_tick_record()


def _publish(queue: str, **options) -> None:
    # A real publish through Celery to the broker (send_task never runs eagerly), so the message
    # in the Redis list is exactly what a worker would consume.
    celery_app.send_task("studyplatform.core.tasks.worker_heartbeat", queue=queue, **options)


def test_healthz_is_200_when_worker_beat_and_queues_are_fresh(client):
    # given: a worker ran the heartbeat and beat just published
    _all_alive()
    # when
    response = client.get("/healthz")
    # then: every check passes and is reported
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    checks = body["checks"]
    assert set(checks) == {
        "database",
        "redis",
        "worker_heartbeat",
        "beat_tick",
        "queue_default",
        "queue_chat",
        "queue_analysis",
        "queue_exports",
    }
    assert all(check["ok"] for check in checks.values())
    assert checks["worker_heartbeat"]["limit"] == 90
    assert 0 <= checks["worker_heartbeat"]["value"] < 60
    assert checks["queue_default"] == {
        "name": "queue_default",
        "ok": True,
        "value": None,
        "limit": 300,
        "length": 0,
    }


def test_healthz_is_503_when_the_worker_heartbeat_is_stale(client):
    # given: beat ticks, but the last worker heartbeat is 200 s old (the worker died)
    _all_alive()
    _redis().set(HEARTBEAT_KEY, str(time.time() - 200))
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["worker_heartbeat"]["ok"] is False
    assert 199 <= checks["worker_heartbeat"]["value"] < 260
    assert checks["beat_tick"]["ok"] is True
    assert checks["database"]["ok"] is True and checks["redis"]["ok"] is True


def test_healthz_is_503_when_no_worker_ever_beat(client):
    beat_tick_record()
    response = client.get("/healthz")
    assert response.status_code == 503
    heartbeat = response.json()["checks"]["worker_heartbeat"]
    assert heartbeat == {"name": "worker_heartbeat", "ok": False, "value": None, "limit": 90}


def test_healthz_worker_limit_is_configurable(client, settings):
    # given: a 40 s old heartbeat, healthy under the default 90 s limit
    _all_alive()
    _redis().set(HEARTBEAT_KEY, str(time.time() - 40))
    assert client.get("/healthz").status_code == 200
    # when: the operator tightens the limit
    settings.HEALTH_WORKER_MAX_AGE_S = 30
    # then
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["worker_heartbeat"]["limit"] == 30


def test_healthz_is_503_when_beat_has_not_ticked(client):
    # given: a worker runs tasks, but beat never published one
    worker_heartbeat()
    # when
    response = client.get("/healthz")
    # then: the beat check fails on its own, the worker check passes
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["beat_tick"] == {"name": "beat_tick", "ok": False, "value": None, "limit": 90}
    assert checks["worker_heartbeat"]["ok"] is True


def test_healthz_is_503_when_the_beat_tick_is_stale(client):
    _all_alive()
    _redis().set(BEAT_TICK_KEY, str(time.time() - 120))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["beat_tick"]["ok"] is False


def test_beat_scheduler_stamps_a_tick_without_touching_the_worker_heartbeat():
    # given: beat's scheduler publishing an entry for a task this process does not know, so the
    # message goes to the broker (a known task would run eagerly under the test settings)
    scheduler = TickStampingScheduler(app=celery_app, lazy=True)
    entry = ScheduleEntry(
        name="probe", task="tests.never.registered", schedule=30.0, app=celery_app
    )
    # when
    scheduler.apply_async(entry, advance=False)
    # then: the tick is recorded, the worker heartbeat is not, and the message is queued
    client = _redis()
    assert time.time() - float(client.get(BEAT_TICK_KEY)) < 60
    assert client.get(HEARTBEAT_KEY) is None
    assert client.llen("default") == 1


def test_published_messages_carry_their_enqueue_time():
    before = time.time()
    _publish("chat")
    message = json.loads(_redis().lindex("chat", -1))
    assert before <= message["headers"][ENQUEUED_AT_HEADER] <= time.time()


def test_healthz_is_503_when_a_message_has_waited_too_long_in_a_queue(client):
    # given: worker and beat alive, and a message published 10 minutes ago still waiting in
    # the default queue (its stamp given explicitly: the publish path keeps a caller's stamp)
    _all_alive()
    _publish("default", headers={ENQUEUED_AT_HEADER: time.time() - 600})
    _publish("default")
    # when
    response = client.get("/healthz")
    # then: the default queue check fails with the oldest message's age; the others pass
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["queue_default"]["ok"] is False
    assert 600 <= checks["queue_default"]["value"] < 660
    assert checks["queue_default"]["length"] == 2
    assert checks["queue_chat"]["ok"] is True


def test_healthz_allows_a_longer_backlog_on_the_job_queues(client):
    # given: an export waiting 10 minutes behind a long job
    _all_alive()
    _publish("exports", headers={ENQUEUED_AT_HEADER: time.time() - 600})
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["queue_exports"]["limit"] == 1800


def test_healthz_counts_a_delayed_message_from_its_eta(client):
    # given: a message published 10 minutes ago to run in an hour (no worker picked it up yet)
    _all_alive()
    _publish(
        "default",
        headers={ENQUEUED_AT_HEADER: time.time() - 600},
        eta=datetime.now(UTC) + timedelta(hours=1),
    )
    # then: it is not a backlog yet
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["queue_default"]["length"] == 1


def test_healthz_is_503_when_redis_is_unreachable(client, settings):
    # given: Redis pointing at a closed port
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    # when
    started = time.monotonic()
    response = client.get("/healthz")
    # then: every Redis-backed check fails, with one connection attempt per server
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"] == {"name": "redis", "ok": False, "error": "ConnectionError"}
    assert checks["worker_heartbeat"]["error"] == "redis unreachable"
    assert checks["queue_exports"]["ok"] is False
    assert checks["database"]["ok"] is True
    assert time.monotonic() - started < 10
