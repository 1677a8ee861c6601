"""Nudges after a missed period: at the configured local time the next day, once, only for a
missed period, never to a withdrawn participant, in-app and by email."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from studyplatform.compliance import services
from studyplatform.compliance.models import UsageNudge
from studyplatform.participants.services import participant_withdraw
from tests.compliance.conftest import T0, local

pytestmark = pytest.mark.django_db


def tick(now, capture):
    with capture(execute=True):
        return services.nudge_tick(now=now)


def status(participant):
    return {n.period: n.status for n in UsageNudge.objects.filter(participant=participant)}


def test_enrollment_plans_one_nudge_per_counted_day_at_the_local_time_next_day(req_study, enroll):
    participant = enroll(req_study, now=T0, timezone_name="Asia/Tokyo")
    nudges = list(UsageNudge.objects.filter(participant=participant).order_by("period"))
    # 4 counted days (of_days), each checked at 19:00 Tokyo the following day
    assert [n.period for n in nudges] == [0, 1, 2, 3]
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert [n.due_at.astimezone(tokyo).strftime("%m-%d %H:%M") for n in nudges] == [
        "03-03 19:00",
        "03-04 19:00",
        "03-05 19:00",
        "03-06 19:00",
    ]


def test_a_missed_day_is_nudged_once_in_app_and_by_email(
    req_study, enroll, chat, django_capture_on_commit_callbacks
):
    # given: day 0 met, day 1 missed (3 minutes only)
    participant = enroll(req_study, now=T0)
    chat(participant, local(0, 12), 5)
    chat(participant, local(1, 12), 3)
    mail.outbox.clear()
    # when: ticks run before, at and after 19:00 the next day, twice each
    for now in (local(1, 18, 59), local(1, 19), local(1, 19), local(2, 18, 59)):
        tick(now, django_capture_on_commit_callbacks)
    assert status(participant)[0] == UsageNudge.Status.NOT_NEEDED  # day 0 was met
    assert status(participant)[1] == UsageNudge.Status.SCHEDULED  # not yet 19:00 on day 2
    for now in (local(2, 19), local(2, 19, 1), local(2, 20)):
        tick(now, django_capture_on_commit_callbacks)
    # then: day 1's nudge was sent once, with one email, and shows on the home page that day
    nudge = UsageNudge.objects.get(participant=participant, period=1)
    assert nudge.status == UsageNudge.Status.SENT and nudge.sent_at == local(2, 19)
    assert round(nudge.active_minutes, 2) == 3.03
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["person1@example.org"]
    assert "less than the study asks for each day" in mail.outbox[0].body
    assert [n.period for n in services.nudges_in_app(participant, now=local(2, 21))] == [1]
    assert services.nudges_in_app(participant, now=local(3, 19, 1)) == []


def test_no_nudge_for_a_day_met_after_the_refresh_task_was_missed(
    req_study, enroll, chat, django_capture_on_commit_callbacks
):
    # given: the participant met day 0 but no refresh ever ran (the worker was down)
    participant = enroll(req_study, now=T0)
    chat(participant, local(0, 22), 6)
    # when: the nudge time comes
    tick(local(1, 19), django_capture_on_commit_callbacks)
    # then: the tick recomputed the day from the messages and sent nothing
    assert status(participant)[0] == UsageNudge.Status.NOT_NEEDED
    assert mail.outbox == []


def test_a_withdrawn_participant_is_not_nudged(
    req_study, enroll, django_capture_on_commit_callbacks
):
    participant = enroll(req_study, now=T0)
    mail.outbox.clear()
    participant_withdraw(participant=participant, mode="keep", by="participant")
    for day in range(1, 5):
        tick(local(day, 19), django_capture_on_commit_callbacks)
    assert set(status(participant).values()) == {UsageNudge.Status.CANCELLED}
    assert mail.outbox == []


def test_a_participant_without_email_gets_the_in_app_nudge_only(
    req_study, enroll, django_capture_on_commit_callbacks
):
    participant = enroll(req_study, now=T0, email="")
    mail.outbox.clear()
    tick(local(1, 19), django_capture_on_commit_callbacks)
    assert status(participant)[0] == UsageNudge.Status.SENT
    assert mail.outbox == []
    assert len(services.nudges_in_app(participant, now=local(1, 20))) == 1


def test_a_nudge_checked_too_late_is_dropped(req_study, enroll, django_capture_on_commit_callbacks):
    # after an outage, a message about "yesterday" a day late would be about the wrong day
    participant = enroll(req_study, now=T0)
    mail.outbox.clear()
    tick(local(2, 8), django_capture_on_commit_callbacks)
    assert status(participant)[0] == UsageNudge.Status.EXPIRED
    assert mail.outbox == []


def test_a_worker_killed_while_checking_leaves_the_nudge_to_the_next_tick(
    req_study, enroll, django_capture_on_commit_callbacks
):
    participant = enroll(req_study, now=T0)
    UsageNudge.objects.filter(participant=participant, period=0).update(
        status=UsageNudge.Status.SENDING, claim="dead", claimed_at=local(1, 19)
    )
    tick(local(1, 19, 2), django_capture_on_commit_callbacks)
    assert status(participant)[0] == UsageNudge.Status.SENDING  # another worker may hold it
    tick(local(1, 19, 6), django_capture_on_commit_callbacks)
    assert status(participant)[0] == UsageNudge.Status.SENT


def test_a_protocol_change_replans_only_the_nudges_still_ahead(
    req_study, enroll, owner, rct_doc, django_capture_on_commit_callbacks
):
    from studyplatform.studies.services import protocol_version_create
    from tests.compliance.conftest import requirement_doc

    participant = enroll(req_study, now=T0)
    # when: on day 1 at 20:00 the nudge moves to 08:00 (day 0's nudge, due 19:00, not yet ticked)
    doc = requirement_doc(rct_doc)
    doc["requirements"]["nudge"]["local_time"] = "08:00"
    protocol_version_create(study=req_study, doc=doc, author=owner, change_note="earlier nudge")
    req_study.refresh_from_db()
    services.nudges_resync_study(study=req_study, now=local(1, 20))
    # then: day 0's nudge keeps its time (its time had come); the later ones move to 08:00
    due = {n.period: n.due_at for n in UsageNudge.objects.filter(participant=participant)}
    assert due == {0: local(1, 19), 1: local(2, 8), 2: local(3, 8), 3: local(4, 8)}
    # when: the requirement is removed altogether
    del doc["requirements"]
    protocol_version_create(study=req_study, doc=doc, author=owner, change_note="no goal")
    req_study.refresh_from_db()
    services.nudges_resync_study(study=req_study, now=local(1, 21))
    # then: nothing ahead is planned, and the one already due is cancelled by the tick
    tick(local(1, 21), django_capture_on_commit_callbacks)
    assert status(participant) == {0: UsageNudge.Status.CANCELLED}


def test_a_closed_study_nudges_nobody(req_study, enroll, owner, django_capture_on_commit_callbacks):
    from studyplatform.studies.services import study_transition

    participant = enroll(req_study, now=T0)
    mail.outbox.clear()
    study_transition(study=req_study, to="closed", actor=owner)
    tick(local(1, 19), django_capture_on_commit_callbacks)
    assert status(participant)[0] == UsageNudge.Status.CANCELLED
    assert mail.outbox == []


def test_a_weekly_requirement_is_checked_the_morning_after_each_week(
    weekly_study, enroll, chat, django_capture_on_commit_callbacks
):
    # given: 09:00 in-app nudges; week 0 met (3 x 10 minutes, 4+ messages), week 1 not
    participant = enroll(weekly_study, now=T0)
    nudges = UsageNudge.objects.filter(participant=participant).order_by("period")
    # weeks 0-2; week 3's check (day 28) would fall after the 28-day study has ended
    assert [(n.period, n.due_at) for n in nudges] == [
        (0, local(7, 9)),
        (1, local(14, 9)),
        (2, local(21, 9)),
    ]
    for day in (0, 3, 6):
        chat(participant, local(day, 12), 10)
    chat(participant, local(8, 12), 10)
    mail.outbox.clear()
    for day in (7, 14):
        tick(local(day, 9), django_capture_on_commit_callbacks)
    # then: only week 1 is nudged, in-app only (no email channel)
    assert status(participant) == {
        0: UsageNudge.Status.NOT_NEEDED,
        1: UsageNudge.Status.SENT,
        2: UsageNudge.Status.SCHEDULED,
    }
    assert mail.outbox == []


def test_the_nudge_email_is_in_the_participants_language(
    req_study, enroll, django_capture_on_commit_callbacks
):
    enroll(req_study, now=T0, language="pt-br")
    mail.outbox.clear()
    tick(local(1, 19), django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject.startswith("Um lembrete de ")
    assert "Ontem você usou o chat do estudo menos do que o estudo pede" in mail.outbox[0].body
