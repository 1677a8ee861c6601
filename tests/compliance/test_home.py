"""The participant's home page: today's progress, days met against the rule, what is left,
the in-app nudge and the completion step (the panel's completion link and code).

The page reads the wall clock, so the data is placed on the participant's local days around
today (whatever the time of day the test runs at)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from studyplatform.compliance import services
from studyplatform.compliance.models import UsageNudge
from studyplatform.participants.session import SESSION_KEY
from surveys import schedule_rules

pytestmark = pytest.mark.django_db


def login(client, participant):
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def enroll_days_ago(study, enroll, days: int, tz: str = "America/Sao_Paulo"):
    """A participant whose local enrollment date is ``days`` local days before today."""
    probe = enroll(study, timezone_name=tz)
    ctx = services._context(probe)
    today = schedule_rules.local_date_of(ctx, timezone.now())
    enrolled = schedule_rules.local_to_utc(ctx, today - dt.timedelta(days=days), dt.time(0, 1))
    probe.enrolled_at = enrolled
    probe.save(update_fields=["enrolled_at"])
    return probe, ctx, today


def test_home_shows_progress_what_is_left_and_then_the_completion_step(
    client, req_study, enroll, chat
):
    # given: 3 of 4 days needed; days 0 and 2 met, day 1 missed, today (day 3) 2 minutes so far
    participant, ctx, today = enroll_days_ago(req_study, enroll, 3)

    def at(day: dt.date, minute: int) -> dt.datetime:
        return schedule_rules.local_to_utc(ctx, day, dt.time(0, minute))

    chat(participant, at(today - dt.timedelta(days=3), 5), 5)
    chat(participant, at(today - dt.timedelta(days=1), 5), 6)
    chat(participant, at(today, 2), 2)
    services.compliance_refresh(participant=participant, since=dt.date.min)
    login(client, participant)
    # when: the participant opens the home page
    page = client.get("/p/").content.decode()
    # then: today's minutes, the days met, and one more day needed; no completion step yet
    assert "2 of 5 minutes" in page
    assert "Not met yet today." in page
    assert "Days with the goal met: 2 (at least 3 of 4 are needed)." in page
    assert "1 more day with the goal met is needed to complete the study." in page
    assert 'id="completion-step"' not in page
    # when: today's goal is met
    chat(participant, at(today, 10), 5)
    services.compliance_refresh(participant=participant)
    page = client.get("/p/").content.decode()
    # then: the completion step with the panel's link and its code
    assert "Goal met for today. Thank you!" in page
    assert 'id="completion-step"' in page
    assert 'href="https://app.prolific.com/submissions/complete?cc=REPLACE_ME"' in page
    assert "<strong>REPLACE_ME</strong>" in page


def test_home_shows_the_in_app_nudge_in_the_participants_language(client, req_study, enroll):
    participant, _, _ = enroll_days_ago(req_study, enroll, 2)
    participant.language = "pt-br"
    participant.save(update_fields=["language"])
    # the nudge for day 0 comes due now
    now = timezone.now()
    UsageNudge.objects.filter(participant=participant, period=0).update(due_at=now)
    services.nudge_tick(now=now)
    login(client, participant)
    page = client.get("/p/", HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert 'data-nudge="0"' in page
    assert "Ontem você usou o chat do estudo menos do que o estudo pede" in page
    assert UsageNudge.objects.get(participant=participant, period=0).seen_at is not None


def test_a_study_without_requirements_shows_no_goal(client, recruiting_study, enroll):
    participant = enroll(recruiting_study)
    login(client, participant)
    page = client.get("/p/").content.decode()
    assert 'id="usage-progress"' not in page
