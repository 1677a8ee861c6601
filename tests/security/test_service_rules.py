"""Issue 12, "domain rules live in services": the launch checklist holds for the API as for the
console, and a researcher's "remind now" respects the protocol's reminder cap."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from studyplatform.core.models import AuditEvent
from studyplatform.studies.launch import model_check_record
from studyplatform.studies.models import Study
from studyplatform.studies.services import protocol_version_create, study_transition
from surveys.engine import schedule_tick
from surveys.models import Invitation
from tests.factories import launch_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def piloting_study(study, owner):
    """The example study on simulated models (no endpoint or key needed), piloting."""
    doc = study.protocol
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": "simulated", "name": f"sim-{arm['key']}"}
    protocol_version_create(study=study, doc=doc, author=owner)
    return study_transition(study=study, to="piloting", actor=owner)


def _transition(api_as, user, study, to: str):
    return api_as(user).post(f"/api/studies/{study.slug}/transition/", {"to": to}, format="json")


def test_the_api_refuses_to_launch_a_study_whose_checklist_fails(piloting_study, owner, api_as):
    # given: a piloting study whose models were never tested
    # when: the owner launches it through the API
    response = _transition(api_as, owner, piloting_study, "recruiting")
    # then: 409 naming each failing check, and the study is still piloting
    assert response.status_code == 409
    body = response.json()
    assert body["detail"] == "Not launched: launch checklist items fail."
    failing = {item["key"]: item for item in body["failing_checks"]}
    assert set(failing) == {"model_check:legacy", "model_check:current"}
    assert failing["model_check:legacy"] == {
        "key": "model_check:legacy",
        "label": "Test message to arm legacy's model in the last 24 hours",
        "reason": "No test message yet: use Test models",
    }
    piloting_study.refresh_from_db()
    assert piloting_study.status == Study.Status.PILOTING
    assert not AuditEvent.objects.filter(action="study.transition", data__to="recruiting").exists()


def test_the_api_refuses_a_launch_when_a_model_changed_after_its_test(
    piloting_study, owner, api_as
):
    # given: both models tested, then one arm's model changed
    for arm in piloting_study.arms.filter(is_active=True):
        model_check_record(study=piloting_study, arm=arm, ok=True, error="", actor=owner)
    doc = piloting_study.protocol
    doc["arms"][0]["model"]["name"] = "sim-other"
    protocol_version_create(study=piloting_study, doc=doc, author=owner, change_note="new model")
    # when
    response = _transition(api_as, owner, piloting_study, "recruiting")
    # then
    assert response.status_code == 409
    assert response.json()["failing_checks"] == [
        {
            "key": "model_check:legacy",
            "label": "Test message to arm legacy's model in the last 24 hours",
            "reason": "The model changed since the last test: test again",
        }
    ]
    piloting_study.refresh_from_db()
    assert piloting_study.status == Study.Status.PILOTING


def test_the_api_launches_a_study_whose_checklist_passes(piloting_study, owner, api_as):
    # given: every arm's model answered a test message
    for arm in piloting_study.arms.filter(is_active=True):
        model_check_record(study=piloting_study, arm=arm, ok=True, error="", actor=owner)
    # when
    response = _transition(api_as, owner, piloting_study, "recruiting")
    # then
    assert response.status_code == 200
    assert response.json()["status"] == "recruiting"
    piloting_study.refresh_from_db()
    assert piloting_study.status == Study.Status.RECRUITING


def test_a_failed_model_test_blocks_the_launch_with_its_reason(piloting_study, owner, api_as):
    legacy, current = (piloting_study.arms.get(key=k) for k in ("legacy", "current"))
    model_check_record(study=piloting_study, arm=legacy, ok=False, error="HTTP 401", actor=owner)
    model_check_record(study=piloting_study, arm=current, ok=True, error="", actor=owner)

    response = _transition(api_as, owner, piloting_study, "recruiting")

    assert response.status_code == 409
    assert response.json()["failing_checks"] == [
        {
            "key": "model_check:legacy",
            "label": "Test message to arm legacy's model in the last 24 hours",
            "reason": "The last test failed: HTTP 401",
        }
    ]


# --- reminders ---------------------------------------------------------------------------------


@pytest.fixture
def open_baseline(study, owner, enroll, django_capture_on_commit_callbacks):
    """A participant whose baseline invitation (reminders: max 2) was sent by a real tick."""
    study = launch_study(study, owner)
    participant = enroll(study)
    with django_capture_on_commit_callbacks(execute=True):
        schedule_tick(now=timezone.now())
    mail.outbox.clear()
    return Invitation.objects.get(participant=participant, entry_key="baseline")


def test_eight_remind_now_clicks_send_at_most_the_protocols_max(
    open_baseline, owner, api_as, django_capture_on_commit_callbacks
):
    # given: the protocol allows at most 2 reminders for the baseline survey
    baseline = next(
        e
        for e in open_baseline.protocol_version.content["surveys"]["schedule"]
        if e["key"] == "baseline"
    )
    assert baseline["reminders"]["max"] == 2
    url = f"/api/studies/{open_baseline.study.slug}/invitations/{open_baseline.pk}/remind/"
    client = api_as(owner)
    # when: "remind now" is pressed 8 times
    statuses = []
    for _ in range(8):
        with django_capture_on_commit_callbacks(execute=True):
            statuses.append(client.post(url).status_code)
    # then: 2 reminders went out, the other 6 presses were refused with a reason
    assert statuses == [200, 200] + [409] * 6
    assert len(mail.outbox) == 2
    assert all(m.subject.startswith("Reminder:") for m in mail.outbox)
    last = client.post(url).json()
    assert last == {
        "detail": "The protocol allows at most 2 reminder(s) for this survey and 2 were sent; "
        "no reminder was sent."
    }
    open_baseline.refresh_from_db()
    assert open_baseline.reminders_sent == 2
    assert AuditEvent.objects.filter(action="survey.remind").count() == 2


def test_manual_reminders_use_up_the_scheduled_ones(
    open_baseline, owner, api_as, django_capture_on_commit_callbacks
):
    # given: both allowed reminders were sent by hand
    url = f"/api/studies/{open_baseline.study.slug}/invitations/{open_baseline.pk}/remind/"
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert api_as(owner).post(url).status_code == 200
    # when: the scheduled reminder times pass (24 h and 48 h after opening)
    with django_capture_on_commit_callbacks(execute=True):
        schedule_tick(now=open_baseline.opens_at + timezone.timedelta(hours=25))
        schedule_tick(now=open_baseline.opens_at + timezone.timedelta(hours=49))
    # then: no third reminder (the daily mood EMA may open in those 49 h, depending on the hour
    # the test runs, so only reminder mails are counted)
    open_baseline.refresh_from_db()
    assert open_baseline.reminders_sent == 2
    reminders = [m for m in mail.outbox if m.subject.startswith("Reminder:")]
    assert len(reminders) == 2


# --- the safety path cannot be broken by configuration ------------------------------------------


def _sign_in(client, participant) -> None:
    from studyplatform.participants.session import SESSION_KEY

    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def _store_response_time(study, hours) -> None:
    """Put a response time into the current protocol version as a version stored before the
    schema had a maximum would hold it (the validator may refuse it today)."""
    from studyplatform.studies.models import ProtocolVersion

    version = study.current_version
    content = version.content
    content["safety"]["response_time_hours"] = hours
    ProtocolVersion.objects.filter(pk=version.pk).update(content=content)
    study.refresh_from_db()


def test_a_crisis_message_under_a_1e308_response_time_is_stored_alerted_and_answered(
    recruiting_study, enroll, client, django_capture_on_commit_callbacks
):
    import json

    from studyplatform.chat.models import Message
    from studyplatform.safety.models import SafetyAlert

    # given: a live study whose safety plan asks for a response within 1e308 hours
    _store_response_time(recruiting_study, 1e308)
    participant = enroll(recruiting_study)
    _sign_in(client, participant)
    client.post("/p/chat/new/")
    conversation = participant.conversations.get()
    # when: the participant writes a crisis message
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/p/chat/c/{conversation.pk}/send/",
            json.dumps({"text": "I want to end my life"}),
            content_type="application/json",
        )
    # then: no 500: the message is stored, resources are shown, the alert is raised
    assert response.status_code == 201
    assert "findahelpline.com" in response.json()["crisis"]["html"]
    message = Message.objects.get(role="user")
    assert message.content == "I want to end my life"
    alert = SafetyAlert.objects.get(message=message)
    hours = (alert.due_at - alert.created_at).total_seconds() / 3600
    assert hours == 720  # clamped to the schema maximum: still a due time the queue can sort by


def test_a_flagged_phq9_answer_under_a_1e308_response_time_is_saved_and_alerted(
    recruiting_study, enroll, client, django_capture_on_commit_callbacks
):
    from studyplatform.safety.models import SafetyAlert
    from surveys.models import Response

    _store_response_time(recruiting_study, 1e308)
    participant = enroll(recruiting_study)
    with django_capture_on_commit_callbacks(execute=True):
        schedule_tick(now=timezone.now())
    invitation = Invitation.objects.get(participant=participant, entry_key="baseline")
    _sign_in(client, participant)
    url = f"/p/surveys/{invitation.pk}/phq9/"
    answers = {f"phq9_{i}": "0" for i in range(1, 10)} | {"phq9_9": "2"}

    response = client.post(url, {**answers, "action": "submit"})

    assert response.status_code == 302
    phq9 = Response.objects.get(instrument_key="phq9")
    assert phq9.status == "submitted" and "protocol:phq9_9" in phq9.flags
    assert SafetyAlert.objects.filter(participant=participant, source="survey").count() == 1


def test_the_admin_offers_no_way_around_the_lifecycle(piloting_study, make_user):
    # given: a platform admin on the study's admin page
    admin = make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    # when
    html = client.get(f"/admin/studies/study/{piloting_study.pk}/change/").content.decode()
    # then: the status is shown, not editable (launching goes through study_transition)
    assert 'name="status"' not in html
    assert "Piloting" in html
