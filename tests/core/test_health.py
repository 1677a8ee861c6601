"""/healthz reports database and Redis reachability."""

from __future__ import annotations

import pytest

from studyplatform.core.tasks import worker_heartbeat

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True


def test_healthz_shows_the_worker_heartbeat_age(client):
    worker_heartbeat()
    age = client.get("/healthz").json()["checks"]["redis"]["worker_heartbeat_age_s"]
    assert age is not None and 0 <= age < 60


def test_healthz_is_503_when_redis_is_unreachable(client, settings):
    # given: Redis pointing at a closed port
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == {"ok": False, "error": "ConnectionError"}
