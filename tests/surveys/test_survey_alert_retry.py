"""A flagged survey answer survives a failure while raising its alert: the answers are saved,
the thank-you page shows the crisis resources, and the retry raises the alert afterwards."""

from __future__ import annotations

import pytest
from django.utils import timezone

from studyplatform.core.models import AuditEvent
from studyplatform.participants.session import SESSION_KEY
from studyplatform.safety import services as safety_services
from studyplatform.safety.models import SafetyAlert
from surveys.engine import schedule_tick
from surveys.models import Invitation, Response

pytestmark = pytest.mark.django_db

PHQ9_ITEM_9 = {f"phq9_{i}": "0" for i in range(1, 10)} | {"phq9_9": "1"}


@pytest.fixture
def invited(recruiting_study, enroll, client, django_capture_on_commit_callbacks):
    participant = enroll(recruiting_study)
    with django_capture_on_commit_callbacks(execute=True):
        schedule_tick(now=timezone.now())
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()
    return participant, Invitation.objects.get(participant=participant, entry_key="baseline")


def test_a_failed_survey_alert_keeps_the_answers_and_resources_and_is_swept_later(
    invited, client, monkeypatch, django_capture_on_commit_callbacks
):
    participant, invitation = invited

    # given: raising alerts fails, and so does queueing the retry
    def broken(**kwargs):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(safety_services, "safety_alert_raise", broken)
    queued = []
    monkeypatch.setattr(safety_services, "_queue_retry", lambda *args: queued.append(args))
    # when: the participant answers PHQ-9 item 9 with "several days"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/p/surveys/{invitation.pk}/phq9/", {**PHQ9_ITEM_9, "action": "submit"}
        )
    # then: the answers are saved with their flags and the page goes on
    assert response.status_code == 302
    phq9 = Response.objects.get(instrument_key="phq9")
    assert phq9.status == "submitted" and "protocol:phq9_9" in phq9.flags
    assert not SafetyAlert.objects.exists()
    assert queued == [("survey", phq9.pk)]
    assert AuditEvent.objects.get(action="safety.alert_failed").data == {
        "source": "survey",
        "id": phq9.pk,
    }
    # when: the cause is fixed and the sweep runs (twice)
    monkeypatch.undo()
    assert safety_services.safety_alert_sweep() == 1
    assert safety_services.safety_alert_sweep() == 0
    # then: one alert, dated when the participant submitted
    alert = SafetyAlert.objects.get()
    assert alert.source == "survey" and alert.participant == participant
    assert alert.created_at == phq9.submitted_at
