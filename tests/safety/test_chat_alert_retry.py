"""The safety path survives a failure while raising an alert: the message is stored and the
crisis resources shown, the failure is logged and recorded, and a retry (task or beat sweep)
raises the alert afterwards."""

from __future__ import annotations

import json
import logging

import pytest

from studyplatform.chat.models import Message
from studyplatform.core.models import AuditEvent
from studyplatform.participants.session import SESSION_KEY
from studyplatform.safety import services
from studyplatform.safety.models import SafetyAlert

pytestmark = pytest.mark.django_db


@pytest.fixture
def me(chat_study, enroll, client):
    participant = enroll(chat_study)
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()
    return participant


def _send_crisis(client, participant, capture):
    client.post("/p/chat/new/")
    conversation = participant.conversations.get()
    with capture(execute=True):
        return client.post(
            f"/p/chat/c/{conversation.pk}/send/",
            json.dumps({"text": "I want to end my life"}),
            content_type="application/json",
        )


def _failing_first(monkeypatch, times: int):
    """Make the alert insert fail `times` times (as a database error would), then work."""
    real = services.safety_alert_raise
    calls = {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] <= times:
            SafetyAlert.objects.create(**{"study_id": None})  # an IntegrityError, like a DB fault
        return real(**kwargs)

    monkeypatch.setattr(services, "safety_alert_raise", flaky)
    return calls


def test_a_failed_alert_keeps_the_message_and_resources_and_the_retry_raises_it(
    client, me, monkeypatch, caplog, django_capture_on_commit_callbacks, mailoutbox
):
    # given: raising the alert fails once
    calls = _failing_first(monkeypatch, times=1)
    # when: the participant sends a crisis message
    with caplog.at_level(logging.ERROR, logger="studyplatform.safety.services"):
        response = _send_crisis(client, me, django_capture_on_commit_callbacks)
    # then: the message is stored and the resources are in the response
    assert response.status_code == 201
    assert "findahelpline.com" in response.json()["crisis"]["html"]
    message = Message.objects.get(role="user")
    assert message.content == "I want to end my life"
    # and the failure is logged with its traceback and recorded (no message text in either)
    [record] = [r for r in caplog.records if "retrying later" in r.getMessage()]
    assert record.exc_info is not None
    failed = AuditEvent.objects.get(action="safety.alert_failed")
    assert failed.data == {"source": "chat", "id": message.pk}
    # and the retry task queued after commit (run eagerly here) raised the alert
    assert calls["n"] == 2
    alert = SafetyAlert.objects.get(message=message)
    assert alert.source == "chat" and alert.created_at == message.created_at
    assert len(mailoutbox) == 1
    # and reopening the conversation shows the resources again
    page = client.get(f"/p/chat/c/{message.conversation_id}/").content.decode()
    assert "findahelpline.com" in page


def test_when_every_retry_fails_the_beat_sweep_raises_the_alert_later(
    client, me, monkeypatch, django_capture_on_commit_callbacks
):
    # given: raising the alert keeps failing and the retry task cannot even be queued
    monkeypatch.setattr(services, "safety_alert_raise", _always_fails)
    queued = []
    monkeypatch.setattr(services, "_queue_retry", lambda *args: queued.append(args))
    response = _send_crisis(client, me, django_capture_on_commit_callbacks)
    message = Message.objects.get(role="user")
    assert response.status_code == 201 and "crisis" in response.json()
    assert queued == [("chat", message.pk)]
    assert not SafetyAlert.objects.exists()
    # when: the cause is fixed and the sweep runs
    monkeypatch.undo()
    raised = services.safety_alert_sweep()
    # then: the alert exists, once, even when the sweep runs again
    assert raised == 1
    assert services.safety_alert_sweep() == 0
    assert SafetyAlert.objects.filter(message=message).count() == 1


def test_the_sweep_is_a_beat_entry_with_an_expiry():
    from studyplatform.beat import BEAT_SCHEDULE

    entry = BEAT_SCHEDULE["safety-alert-sweep"]
    assert entry["task"] == "studyplatform.safety.tasks.safety_alert_sweep"
    assert entry["options"]["expires"] < entry["schedule"]


def test_a_withdrawn_and_deleted_message_owes_no_alert(me):
    assert services.safety_alert_retry_raise(source="chat", object_id=999_999) is None


def _always_fails(**kwargs):
    raise RuntimeError("alert insert failed")


def test_a_retry_queued_under_its_old_chat_task_name_still_raises_the_alert(
    client, me, monkeypatch, django_capture_on_commit_callbacks
):
    from studyplatform.celery import app

    # given: a failed alert whose retry was queued before the tasks moved to the safety app
    monkeypatch.setattr(services, "safety_alert_raise", _always_fails)
    monkeypatch.setattr(services, "_queue_retry", lambda *args: None)
    _send_crisis(client, me, django_capture_on_commit_callbacks)
    message = Message.objects.get(role="user")
    monkeypatch.undo()
    # when: a worker receives it under the old name
    app.tasks["studyplatform.chat.tasks.safety_alert_retry"].apply(args=("chat", message.pk))
    # then: the alert is raised, on the same queue as before the move
    assert SafetyAlert.objects.filter(message=message).count() == 1
    route = app.amqp.router.route({}, "studyplatform.safety.tasks.safety_alert_retry")
    assert route["queue"].name == "chat"
