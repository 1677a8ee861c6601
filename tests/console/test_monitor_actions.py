"""Working from the console: reviewing, acknowledging and resolving safety alerts, inviting and
removing team members, starting analysis runs and creating exports (real services, eager
Celery)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone

from analysis.models import AnalysisRun
from studyplatform.chat.models import Conversation, Message
from studyplatform.core.models import AuditEvent
from studyplatform.exports.models import DatasetExport
from studyplatform.safety.models import SafetyAlert
from studyplatform.safety.services import safety_alert_raise
from studyplatform.studies.models import Membership, StudyInvitation

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert(recruiting_study, enroll):
    participant = enroll(recruiting_study)
    now = timezone.now()
    conversation = Conversation.objects.create(
        participant=participant, arm=participant.allocation.arm, created_at=now, updated_at=now
    )

    def say(text, at):
        return Message.objects.create(
            conversation=conversation,
            participant=participant,
            role="user",
            content=text,
            status="complete",
            created_at=at,
        )

    say("outside the window", now - dt.timedelta(hours=40))  # 26 h before the alert
    say("earlier that day", now - dt.timedelta(hours=3))
    trigger = say("I cannot go on", now - dt.timedelta(hours=2))
    return safety_alert_raise(
        participant=participant,
        source="chat",
        severity="high",
        category="self_harm",
        excerpt="I cannot go on",
        detector="lexicon",
        message=trigger,
        now=now - dt.timedelta(hours=14),  # past the protocol's 12 h: overdue
    )


@pytest.fixture
def reviewer(recruiting_study, member_of, client):
    user = member_of(recruiting_study, "safety_reviewer", username="rita")
    client.force_login(user)
    return user


def test_the_queue_highlights_overdue_alerts_with_their_excerpt(
    recruiting_study, alert, reviewer, client
):
    html = client.get(f"/console/{recruiting_study.slug}/safety/").content.decode()
    row = re.search(r'<tr class="overdue">.*?</tr>', html, re.S).group(0)
    assert "I cannot go on" in row and "overdue" in row and alert.participant.code in row


def test_reading_an_alert_shows_the_timeline_and_is_audited(
    recruiting_study, alert, reviewer, client
):
    # when
    html = client.get(f"/console/{recruiting_study.slug}/safety/{alert.pk}/").content.decode()
    # then: messages within 24 h either side, the triggering one marked; a read event
    assert "earlier that day" in html and "(this message raised the alert)" in html
    assert "outside the window" not in html
    event = AuditEvent.objects.get(action="safety.read")
    assert event.actor == reviewer and event.target_id == str(alert.pk)


def test_acknowledging_then_resolving_through_the_page_is_audited(
    recruiting_study, alert, reviewer, client
):
    base = f"/console/{recruiting_study.slug}/safety/{alert.pk}/"
    # when: acknowledge
    response = client.post(base + "acknowledge/", {"note": "calling them"}, follow=True)
    # then
    assert "Alert acknowledged." in response.content.decode()
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.acknowledged_by == reviewer
    assert "calling them" in alert.notes
    # when: resolve with an escalation note
    response = client.post(
        base + "resolve/", {"note": "spoke with them", "escalation": "PI informed"}, follow=True
    )
    # then
    assert "Alert resolved." in response.content.decode()
    alert.refresh_from_db()
    assert alert.status == "resolved" and "PI informed" in alert.notes
    assert list(
        AuditEvent.objects.filter(action__in=("safety.acknowledge", "safety.resolve"))
        .order_by("id")
        .values_list("action", "actor")
    ) == [("safety.acknowledge", reviewer.pk), ("safety.resolve", reviewer.pk)]
    assert AuditEvent.objects.get(action="safety.resolve").data["escalated"] is True


def test_conflicts_are_shown_as_messages_and_change_nothing(
    recruiting_study, alert, reviewer, client, owner
):
    from studyplatform.safety.services import alert_acknowledge

    # given: the owner acknowledged first
    alert_acknowledge(alert=alert, actor=owner)
    base = f"/console/{recruiting_study.slug}/safety/{alert.pk}/"
    # when: the reviewer acknowledges too, and tries to resolve without a note
    ack = client.post(base + "acknowledge/", {"note": ""}, follow=True).content.decode()
    res = client.post(base + "resolve/", {"note": "  "}, follow=True).content.decode()
    # then
    assert "This alert was already acknowledged by olivia" in ack
    assert "A note saying what was done is required to resolve an alert." in res
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.acknowledged_by == owner
    assert not AuditEvent.objects.filter(action="safety.resolve").exists()


def test_inviting_an_address_emails_a_console_link_and_grants_nothing_yet(
    recruiting_study, owner, client, settings
):
    settings.SITE_URL = "https://study.example.org"
    client.force_login(owner)
    # when
    response = client.post(
        f"/console/{recruiting_study.slug}/team/",
        {"email": "New.Person@example.org", "role": "analyst"},
        follow=True,
    )
    # then: a pending invitation (audited) and an email with an absolute console link; no
    # account and no membership until someone accepts
    html = response.content.decode()
    assert "Invited New.Person@example.org as analyst." in html
    invitation = StudyInvitation.objects.get(study=recruiting_study)
    assert (invitation.email, invitation.role, invitation.status) == (
        "New.Person@example.org",
        "analyst",
        "pending",
    )
    assert invitation.invited_by == owner
    assert AuditEvent.objects.filter(action="invitation.create", actor=owner).exists()
    assert not get_user_model().objects.filter(email__iexact="new.person@example.org").exists()
    assert Membership.objects.filter(study=recruiting_study).count() == 1
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["New.Person@example.org"]
    assert re.search(r"https://study\.example\.org/console/invitations/\S+/", mail.outbox[0].body)
    assert "https://study.example.org/accounts/signup/" in mail.outbox[0].body
    # and the owner sees it as pending
    assert "New.Person@example.org" in html.split("Pending invitations", 1)[1]


def test_an_invited_researcher_accepts_from_the_link_while_signed_in(
    recruiting_study, owner, client, make_user
):
    existing = make_user("dana", email="dana@example.org")
    client.force_login(owner)
    client.post(
        f"/console/{recruiting_study.slug}/team/", {"email": "DANA@example.org", "role": "monitor"}
    )
    assert not Membership.objects.filter(study=recruiting_study, user=existing).exists()
    link = re.search(r"http\S+(/console/invitations/\S+/)", mail.outbox[0].body).group(1)
    # when: dana opens the link signed in and accepts
    client.force_login(existing)
    page = client.get(link)
    assert page.status_code == 200 and "Accept the invitation" in page.content.decode()
    accepted = client.post(link, follow=True)
    # then
    assert "You joined &quot;" in accepted.content.decode()
    assert Membership.objects.filter(study=recruiting_study, user=existing, role="monitor").exists()
    assert StudyInvitation.objects.get().status == "accepted"
    assert AuditEvent.objects.filter(action="invitation.accept", actor=existing).exists()
    # and the link does not work a second time
    assert client.get(link).status_code == 410


def test_owners_withdraw_pending_invitations(recruiting_study, owner, client, make_user):
    dana = make_user("dana", email="dana@example.org")
    client.force_login(owner)
    base = f"/console/{recruiting_study.slug}/team/"
    client.post(base, {"email": "dana@example.org", "role": "analyst"})
    invitation = StudyInvitation.objects.get()
    link = re.search(r"http\S+(/console/invitations/\S+/)", mail.outbox[0].body).group(1)
    # when
    client.post(f"{base}invitations/{invitation.pk}/revoke/")
    # then: withdrawn (audited), no longer listed, and the link is dead
    invitation.refresh_from_db()
    assert invitation.status == "revoked"
    assert AuditEvent.objects.filter(action="invitation.revoke", actor=owner).exists()
    assert "No pending invitations." in client.get(base).content.decode()
    client.force_login(dana)
    assert client.post(link).status_code == 410
    assert not Membership.objects.filter(study=recruiting_study, user=dana).exists()


def test_bad_invitations_say_why_and_write_nothing(recruiting_study, owner, client):
    client.force_login(owner)
    before = Membership.objects.count()
    response = client.post(
        f"/console/{recruiting_study.slug}/team/", {"email": "not-an-email", "role": "king"}
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "Enter a valid email address." in html and "Choose a role." in html
    assert Membership.objects.count() == before and not mail.outbox
    assert not StudyInvitation.objects.exists()


def test_the_last_owner_cannot_be_removed_but_others_can(
    recruiting_study, owner, client, member_of
):
    monitor = member_of(recruiting_study, "monitor")
    client.force_login(owner)
    own = Membership.objects.get(study=recruiting_study, user=owner, role="owner")
    theirs = Membership.objects.get(study=recruiting_study, user=monitor)
    base = f"/console/{recruiting_study.slug}/team/"
    refused = client.post(f"{base}{own.pk}/remove/", follow=True).content.decode()
    client.post(f"{base}{theirs.pk}/remove/")
    assert "a study must keep at least one owner" in refused
    assert Membership.objects.filter(pk=own.pk).exists()
    assert not Membership.objects.filter(pk=theirs.pk).exists()
    assert AuditEvent.objects.filter(action="membership.remove").count() == 1


def test_starting_an_analysis_run_from_the_console(
    recruiting_study, owner, client, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/console/{recruiting_study.slug}/analyses/", {})
    run = AnalysisRun.objects.get(study=recruiting_study)
    assert run.created_by == owner and run.params["include_pilot"] is False
    # the eager task ran it to an end state (an empty study has nothing to model)
    assert run.status in ("done", "failed")
    html = client.get(f"/console/{recruiting_study.slug}/analyses/").content.decode()
    assert run.get_status_display() in html
    assert 'http-equiv="refresh"' not in html  # nothing in progress: no auto-refresh


def test_a_pending_run_makes_the_page_refresh(recruiting_study, owner, client):
    from analysis.services import analysis_run_create

    analysis_run_create(study=recruiting_study, created_by=owner, enqueue=False)
    client.force_login(owner)
    html = client.get(f"/console/{recruiting_study.slug}/analyses/").content.decode()
    assert '<meta http-equiv="refresh" content="5">' in html


def test_creating_an_export_from_the_console_builds_it_and_offers_the_download(
    recruiting_study, owner, client, enroll, django_capture_on_commit_callbacks
):
    enroll(recruiting_study)
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/console/{recruiting_study.slug}/exports/",
            {
                "tables": ["participants", "allocation"],
                "format": "csv",
                "dates": "relative",
                "chat_mode": "exclude",
                "k": "2",
            },
        )
    export = DatasetExport.objects.get(study=recruiting_study)
    assert export.options["tables"] == ["participants", "allocation"] and export.options["k"] == 2
    assert export.status == "done", export.error
    html = client.get(f"/console/{recruiting_study.slug}/exports/").content.decode()
    download = f"/api/studies/{recruiting_study.slug}/exports/{export.pk}/download/"
    assert download in html
    assert client.get(download).status_code == 200  # the session works for the API download


def test_a_bad_export_request_says_why_and_writes_nothing(recruiting_study, owner, client):
    client.force_login(owner)
    response = client.post(
        f"/console/{recruiting_study.slug}/exports/",
        {"format": "csv", "dates": "relative", "chat_mode": "exclude", "k": "1"},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "must be a whole number from 2 to 100" in html and "tables:" in html
    assert not DatasetExport.objects.exists()
    assert SafetyAlert.objects.count() == 0


def test_someone_without_an_account_is_told_to_sign_up_with_the_invited_address(
    recruiting_study, owner, client
):
    client.force_login(owner)
    client.post(
        f"/console/{recruiting_study.slug}/team/",
        {"email": "newbie@example.org", "role": "analyst"},
    )
    link = re.search(r"http\S+(/console/invitations/\S+/)", mail.outbox[0].body).group(1)
    client.logout()
    page = client.get(link)
    html = page.content.decode()
    assert page.status_code == 200
    assert "newbie@example.org" in html and 'href="/accounts/signup/"' in html
    assert "Sign in to accept" in html
    # and a signed-out POST grants nothing
    client.post(link)
    assert not StudyInvitation.objects.exclude(status="pending").exists()
