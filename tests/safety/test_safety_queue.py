"""The safety-alert queue: ordering and the overdue flag, the audited detail with the
participant's timeline, acknowledge/resolve (with conflicts), the notification email on raise,
the daily digest and the audited admin."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from studyplatform.chat.models import Conversation, Message
from studyplatform.core.models import AuditEvent
from studyplatform.safety.models import SafetyAlert
from studyplatform.safety.services import AlertStateError, alert_acknowledge, safety_alert_raise
from studyplatform.safety.tasks import safety_digest

pytestmark = pytest.mark.django_db

EXCERPT = "I keep thinking about ending it all tonight"


def raise_alert(participant, *, severity="high", at=None, excerpt=EXCERPT, message=None):
    return safety_alert_raise(
        participant=participant,
        source="chat",
        severity=severity,
        category="self_harm",
        excerpt=excerpt,
        detector="lexicon",
        message=message,
        now=at,
    )


def say(participant, content, at, role="user") -> Message:
    conversation = Conversation.objects.filter(participant=participant).first()
    if conversation is None:
        conversation = Conversation.objects.create(
            participant=participant, arm=participant.allocation.arm, created_at=at, updated_at=at
        )
    return Message.objects.create(
        conversation=conversation,
        participant=participant,
        role=role,
        content=content,
        status="complete",
        created_at=at,
    )


@pytest.fixture
def reviewer(recruiting_study, member_of):
    return member_of(recruiting_study, "safety_reviewer", username="rita")


def alerts_url(study, suffix=""):
    return f"/api/studies/{study.slug}/safety-alerts/{suffix}"


def test_the_queue_puts_high_severity_first_then_the_oldest(
    recruiting_study, reviewer, api_as, enroll
):
    # given: alerts of mixed severity and age
    now = timezone.now()
    participant = enroll(recruiting_study)
    low_old = raise_alert(participant, severity="low", at=now - dt.timedelta(hours=5))
    high_new = raise_alert(participant, severity="high", at=now - dt.timedelta(hours=1))
    high_old = raise_alert(participant, severity="high", at=now - dt.timedelta(hours=3))
    medium = raise_alert(participant, severity="medium", at=now - dt.timedelta(hours=2))
    # when
    rows = api_as(reviewer).get(alerts_url(recruiting_study)).data
    # then
    assert [r["id"] for r in rows] == [high_old.pk, high_new.pk, medium.pk, low_old.pk]
    assert rows[0]["participant"] == participant.code and rows[0]["excerpt"] == EXCERPT
    assert {r["status"] for r in rows} == {"open"}


def test_an_open_alert_past_its_due_time_is_overdue_until_acknowledged(
    recruiting_study, reviewer, api_as, enroll
):
    # given: an alert raised two days ago (the protocol allows 12 h) and a fresh one
    participant = enroll(recruiting_study)
    late = raise_alert(participant, at=timezone.now() - dt.timedelta(days=2))
    fresh = raise_alert(participant)
    client = api_as(reviewer)
    # then
    rows = {r["id"]: r for r in client.get(alerts_url(recruiting_study)).data}
    assert rows[late.pk]["overdue"] is True and rows[fresh.pk]["overdue"] is False
    assert rows[late.pk]["due_at"] == (late.created_at + dt.timedelta(hours=12)).isoformat()
    # when: it is acknowledged, it is being handled and no longer overdue
    acked = client.post(alerts_url(recruiting_study, f"{late.pk}/acknowledge/"), {}, format="json")
    assert acked.status_code == 200 and acked.data["overdue"] is False


def test_the_status_filter_and_a_bad_status(recruiting_study, reviewer, api_as, enroll):
    participant = enroll(recruiting_study)
    first, second = raise_alert(participant), raise_alert(participant)
    alert_acknowledge(alert=second, actor=reviewer, note="")
    client = api_as(reviewer)
    assert [r["id"] for r in client.get(alerts_url(recruiting_study) + "?status=open").data] == [
        first.pk
    ]
    acked = client.get(alerts_url(recruiting_study) + "?status=acknowledged").data
    assert [r["id"] for r in acked] == [second.pk]
    assert client.get(alerts_url(recruiting_study) + "?status=resolved").data == []
    bad = client.get(alerts_url(recruiting_study) + "?status=closed")
    assert bad.status_code == 400 and "status" in bad.data


def test_the_detail_shows_the_participants_messages_a_day_either_side_and_is_audited(
    recruiting_study, reviewer, api_as, enroll
):
    # given: the participant's messages 30 h before, 2 h before, at, 1 h and 25 h after the alert
    now = timezone.now()
    participant, other = enroll(recruiting_study), enroll(recruiting_study)
    at = now - dt.timedelta(hours=26)
    say(participant, "too early", at - dt.timedelta(hours=30))
    before = say(participant, "before", at - dt.timedelta(hours=2))
    flagged = say(participant, EXCERPT, at)
    after = say(participant, "after", at + dt.timedelta(hours=1), role="assistant")
    say(participant, "too late", at + dt.timedelta(hours=25))
    say(other, "someone else", at)
    alert = raise_alert(participant, at=at, message=flagged)
    # when
    body = api_as(reviewer).get(alerts_url(recruiting_study, f"{alert.pk}/")).data
    # then
    assert [(m["id"], m["content"]) for m in body["timeline"]] == [
        (before.pk, "before"),
        (flagged.pk, EXCERPT),
        (after.pk, "after"),
    ]
    assert [m["is_alert_message"] for m in body["timeline"]] == [False, True, False]
    assert body["excerpt"] == EXCERPT and body["message_id"] == flagged.pk
    event = AuditEvent.objects.get(action="safety.read")
    assert (event.actor, event.target_type, event.target_id, event.data) == (
        reviewer,
        "safety.safetyalert",
        str(alert.pk),
        {"participant": participant.code},
    )


def test_acknowledge_then_resolve_records_who_when_and_notes(
    recruiting_study, reviewer, api_as, enroll
):
    # given: an open alert
    alert = raise_alert(enroll(recruiting_study))
    client = api_as(reviewer)
    # when: acknowledged with a note
    acked = client.post(
        alerts_url(recruiting_study, f"{alert.pk}/acknowledge/"),
        {"note": "calling now"},
        format="json",
    )
    # then
    assert acked.status_code == 200
    assert (acked.data["status"], acked.data["acknowledged_by"]) == ("acknowledged", "rita")
    assert acked.data["notes"].endswith("rita — acknowledged: calling now")
    # when: resolved with a note and an escalation
    resolved = client.post(
        alerts_url(recruiting_study, f"{alert.pk}/resolve/"),
        {"note": "spoke to them, safe", "escalation": "told the PI"},
        format="json",
    )
    # then
    assert resolved.status_code == 200
    assert (resolved.data["status"], resolved.data["resolved_by"]) == ("resolved", "rita")
    lines = resolved.data["notes"].splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "rita — acknowledged: calling now",
        "rita — resolved: spoke to them, safe",
        "rita — escalated: told the PI",
    ]
    assert all(line.startswith("[20") and " UTC] " in line for line in lines)
    events = AuditEvent.objects.filter(action__startswith="safety.", actor=reviewer).order_by("id")
    assert [(e.action, e.target_id) for e in events] == [
        ("safety.acknowledge", str(alert.pk)),
        ("safety.resolve", str(alert.pk)),
    ]
    assert events[1].data["escalated"] is True and "PI" not in str(events[1].data)


def test_acknowledging_twice_is_a_conflict_that_changes_nothing(
    recruiting_study, reviewer, member_of, api_as, enroll
):
    # given: rita acknowledged the alert
    alert = raise_alert(enroll(recruiting_study))
    api_as(reviewer).post(
        alerts_url(recruiting_study, f"{alert.pk}/acknowledge/"), {}, format="json"
    )
    before = SafetyAlert.objects.get(pk=alert.pk)
    # when: the owner tries too
    owner_client = api_as(member_of(recruiting_study, "owner", username="oscar"))
    response = owner_client.post(
        alerts_url(recruiting_study, f"{alert.pk}/acknowledge/"), {"note": "me too"}, format="json"
    )
    # then: 409 naming who got there first, and the alert is unchanged
    assert response.status_code == 409
    assert response.data["detail"].startswith("This alert was already acknowledged by rita at ")
    after = SafetyAlert.objects.get(pk=alert.pk)
    assert (after.acknowledged_by, after.acknowledged_at, after.notes) == (
        before.acknowledged_by,
        before.acknowledged_at,
        before.notes,
    )
    assert AuditEvent.objects.filter(action="safety.acknowledge").count() == 1


def test_resolving_twice_or_acknowledging_a_resolved_alert_is_a_conflict(
    recruiting_study, reviewer, api_as, enroll
):
    alert = raise_alert(enroll(recruiting_study))
    client = api_as(reviewer)
    url = alerts_url(recruiting_study, f"{alert.pk}/")
    # resolving an open alert directly is allowed
    assert (
        client.post(url + "resolve/", {"note": "false positive"}, format="json").status_code == 200
    )
    notes = SafetyAlert.objects.get(pk=alert.pk).notes
    again = client.post(url + "resolve/", {"note": "again"}, format="json")
    assert again.status_code == 409
    assert again.data["detail"].startswith("This alert was already resolved by rita at ")
    ack = client.post(url + "acknowledge/", {}, format="json")
    assert ack.status_code == 409
    assert ack.data["detail"].startswith("This alert is already resolved (by rita at ")
    assert SafetyAlert.objects.get(pk=alert.pk).notes == notes
    assert AuditEvent.objects.filter(action="safety.resolve").count() == 1


def test_resolving_needs_a_note(recruiting_study, reviewer, api_as, enroll):
    alert = raise_alert(enroll(recruiting_study))
    url = alerts_url(recruiting_study, f"{alert.pk}/resolve/")
    client = api_as(reviewer)
    missing = client.post(url, {"escalation": "x"}, format="json")
    blank = client.post(url, {"note": "   "}, format="json")
    assert missing.status_code == 400 and missing.data["note"] == ["This field is required."]
    assert blank.status_code == 400 and blank.data["note"] == ["This field may not be blank."]
    alert.refresh_from_db()
    assert (alert.status, alert.notes) == ("open", "")
    assert not AuditEvent.objects.filter(action="safety.resolve").exists()


def test_the_service_refuses_an_empty_resolution_note(recruiting_study, reviewer, enroll):
    from studyplatform.safety.services import alert_resolve

    alert = raise_alert(enroll(recruiting_study))
    with pytest.raises(AlertStateError, match="A note saying what was done is required"):
        alert_resolve(alert=alert, actor=reviewer, note=" ")
    assert SafetyAlert.objects.get(pk=alert.pk).status == "open"


@pytest.mark.parametrize("role", ["analyst", "monitor", "designer"])
def test_members_without_review_safety_cannot_see_excerpts(
    role, recruiting_study, member_of, api_as, enroll
):
    alert = raise_alert(enroll(recruiting_study))
    client = api_as(member_of(recruiting_study, role))
    for url in (alerts_url(recruiting_study), alerts_url(recruiting_study, f"{alert.pk}/")):
        response = client.get(url)
        assert response.status_code == 403 and EXCERPT not in str(response.content)
    assert not AuditEvent.objects.filter(action="safety.read").exists()


def test_raising_an_alert_emails_the_protocols_recipients_without_the_excerpt(
    recruiting_study, enroll, mailoutbox, django_capture_on_commit_callbacks, settings
):
    settings.SITE_URL = "https://study.example.org"
    participant = enroll(recruiting_study)
    mailoutbox.clear()
    # when
    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert(participant)
    # then
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["safety-team@example.org"]
    assert participant.code in mail.subject and "HIGH" in mail.subject
    # the link opens the alert's console page on the configured site, not the raw API
    console_page = f"https://study.example.org/console/{recruiting_study.slug}/safety/{alert.pk}/"
    assert f"Review it here: {console_page}\n" in mail.body
    assert "/api/" not in mail.body
    assert "ending it all" not in mail.body and "ending it all" not in mail.subject


def test_the_daily_digest_counts_unresolved_alerts_without_excerpts(
    recruiting_study, reviewer, enroll, mailoutbox, settings
):
    settings.SITE_URL = "https://study.example.org"
    # given: an overdue high alert two days old, an acknowledged low one, a resolved one
    participant = enroll(recruiting_study)
    now = timezone.now()
    raise_alert(participant, severity="high", at=now - dt.timedelta(days=2, minutes=30))
    acked = raise_alert(participant, severity="low", at=now - dt.timedelta(hours=1))
    alert_acknowledge(alert=acked, actor=reviewer, note="")
    done = raise_alert(participant, severity="medium", at=now - dt.timedelta(days=5))
    from studyplatform.safety.services import alert_resolve

    alert_resolve(alert=done, actor=reviewer, note="fine")
    mailoutbox.clear()
    # when
    sent = safety_digest.delay().get()
    # then: one email to the protocol's recipients with counts and the oldest age only
    assert sent == 1 and len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["safety-team@example.org"]
    assert mail.subject == f"[{recruiting_study.slug}] Safety digest: 2 unresolved, 1 overdue"
    body_lines = mail.body.splitlines()
    assert "  high         1              0" in body_lines
    assert "  medium       0              0" in body_lines
    assert "  low          0              1" in body_lines
    assert "Overdue (open past the protocol's response time): 1" in body_lines
    assert "Oldest unresolved alert: 2 d 0 h old" in body_lines
    queue = f"https://study.example.org/console/{recruiting_study.slug}/safety/"
    assert body_lines[-1] == f"Review them here: {queue}"
    assert "ending it all" not in mail.body


def test_no_digest_is_sent_when_every_alert_is_resolved(
    recruiting_study, reviewer, enroll, mailoutbox
):
    from studyplatform.safety.services import alert_resolve

    alert_resolve(alert=raise_alert(enroll(recruiting_study)), actor=reviewer, note="fine")
    mailoutbox.clear()
    assert safety_digest() == 0
    assert mailoutbox == []


def test_the_admin_lists_alerts_without_excerpts_and_audits_opening_one(
    recruiting_study, make_user, client, enroll
):
    admin_user = make_user("root", is_superuser=True, is_staff=True)
    participant = enroll(recruiting_study)
    alert = raise_alert(participant)
    client.force_login(admin_user)
    listing = client.get("/admin/safety/safetyalert/")
    assert listing.status_code == 200 and b"ending it all" not in listing.content
    assert not AuditEvent.objects.filter(action="safety.read").exists()
    detail = client.get(f"/admin/safety/safetyalert/{alert.pk}/change/")
    assert detail.status_code == 200 and b"ending it all" in detail.content
    event = AuditEvent.objects.get(action="safety.read")
    assert (event.actor, event.target_id, event.study_slug, event.data) == (
        admin_user,
        str(alert.pk),
        recruiting_study.slug,
        {"participant": participant.code, "via": "admin"},
    )
