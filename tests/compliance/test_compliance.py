"""Per-day compliance with the usage requirement: local days across time zones and midnight,
the same active minutes as the usage features, incremental refresh, weekly periods and the
completion rule."""

from __future__ import annotations

import datetime as dt

import pytest

from analysis.data import load_study_frames
from analysis.features import daily_features
from studyplatform.compliance import services
from studyplatform.compliance.models import ComplianceDay
from studyplatform.compliance.rules import Requirement, progress
from tests.compliance.conftest import T0, local

pytestmark = pytest.mark.django_db


def days(participant):
    return {
        d.date.isoformat(): (round(d.active_minutes, 2), d.messages, d.study_day)
        for d in ComplianceDay.objects.filter(participant=participant)
    }


def test_a_session_counts_on_the_local_day_it_starts_in_the_participants_zone(
    req_study, enroll, chat
):
    # given: two participants, in São Paulo and in Tokyo, chatting at the same UTC instants
    sp = enroll(req_study, now=T0, timezone_name="America/Sao_Paulo")
    tokyo = enroll(req_study, now=T0, timezone_name="Asia/Tokyo")
    # 23:58 São Paulo on day 1 = 11:58 Tokyo on day 2; the session runs past local midnight
    start = local(1, 23, 58)
    chat(sp, start, 6)
    chat(tokyo, start, 6)
    # when: their days are computed
    for p in (sp, tokyo):
        services.compliance_refresh(participant=p, now=start + dt.timedelta(days=1))
    # then: the 6-minute session counts on the day it started, in each one's own calendar;
    # messages count on the local day they were sent (the usage features' definitions)
    assert days(sp) == {"2026-03-03": (6.03, 2, 1), "2026-03-04": (0.0, 5, 2)}
    # (Tokyo: enrolled at 22:00 local on 2026-03-02, so 2026-03-04 is study day 2 there too)
    assert days(tokyo) == {"2026-03-04": (6.03, 7, 2)}


def test_active_minutes_are_the_usage_features_active_minutes(req_study, enroll, chat):
    # given: sessions of different lengths on several days, one split by a 40-minute pause
    participant = enroll(req_study, now=T0)
    chat(participant, local(0, 12), 3)
    chat(participant, local(1, 9), 7)
    chat(participant, local(1, 9, 50), 2)
    chat(participant, local(3, 20), 0.2)
    # when: compliance is computed, and the analysis computes its daily usage features
    services.compliance_refresh(participant=participant, now=local(4, 8), since=dt.date.min)
    frames = load_study_frames(req_study)
    daily = daily_features(frames.messages, frames.participants, text=False)
    # then: the same numbers, day by day
    expected = {
        r["date"].date().isoformat(): (round(r["active_minutes"], 2), r["messages_sent"])
        for r in daily.to_dict("records")
    }
    assert {k: v[:2] for k, v in days(participant).items()} == expected
    assert expected["2026-03-03"] == (9.07, 11)  # 7.03 + 2.03 minutes: two sessions
    assert expected["2026-03-05"] == (1.0, 2)  # a short session counts at least one minute


def test_an_incremental_refresh_writes_what_a_full_recompute_does(req_study, enroll, chat):
    # given: days refreshed one by one as the participant chats, one session over midnight
    participant = enroll(req_study, now=T0)
    for day, (hour, minute) in enumerate([(12, 0), (23, 57), (8, 0)]):
        chat(participant, local(day, hour, minute), 6)
        services.compliance_refresh(participant=participant, now=local(day, 23, 59))
    services.compliance_refresh(participant=participant, now=local(2, 12))
    incremental = days(participant)
    # when: everything is recomputed from the messages
    services.compliance_refresh(participant=participant, now=local(2, 12), since=dt.date.min)
    # then: identical rows
    assert days(participant) == incremental
    assert set(incremental) == {"2026-03-02", "2026-03-03", "2026-03-04"}


def test_the_message_hook_only_enqueues_a_refresh_that_runs_after_commit(
    req_study, enroll, chat, django_capture_on_commit_callbacks
):
    participant = enroll(req_study, now=T0)
    # when: a message is stored (the task runs eagerly in tests, after the commit)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        chat(participant, dt.datetime.now(dt.UTC), 1)
    # then: nothing was computed during the send; the queued refresh computes today
    assert not ComplianceDay.objects.filter(participant=participant).exists()
    for callback in callbacks:
        callback()
    assert ComplianceDay.objects.filter(participant=participant).count() == 1


def test_a_message_queues_a_refresh_only_when_the_study_sets_a_requirement(
    req_study, owner, rct_doc, enroll, chat, monkeypatch, django_capture_on_commit_callbacks
):
    # given: one study with a usage requirement and one without (the refresh would do nothing)
    from studyplatform.compliance.tasks import compliance_refresh_task
    from studyplatform.studies.services import study_create_from_protocol
    from tests.factories import launch_study

    assert "requirements" not in rct_doc
    rct_doc["study"]["slug"] = "no-requirement"
    plain = launch_study(study_create_from_protocol(doc=rct_doc, author=owner), owner)
    queued: list[int] = []
    monkeypatch.setattr(compliance_refresh_task, "delay", queued.append)
    with_requirement, without = enroll(req_study, now=T0), enroll(plain, now=T0)
    # when: each sends messages
    with django_capture_on_commit_callbacks(execute=True):
        chat(with_requirement, dt.datetime.now(dt.UTC), 1)
        chat(without, dt.datetime.now(dt.UTC), 1)
    # then: refreshes were queued for the first participant's messages only
    assert queued and set(queued) == {with_requirement.pk}


def test_completion_is_offered_exactly_when_the_rule_is_met(req_study, enroll, chat):
    # given: 3 of 4 days needed; days 0 and 1 met, day 2 missed (3 minutes)
    participant = enroll(req_study, now=T0)
    chat(participant, local(0, 12), 5)
    chat(participant, local(1, 12), 5)
    chat(participant, local(2, 12), 3)
    services.compliance_refresh(participant=participant, now=local(3, 8), since=dt.date.min)
    # then: on the last counted day, before chatting, one more day is needed
    before = services.participant_progress(participant, now=local(3, 8))
    assert (before.met_count, before.still_needed, before.completion_offered) == (2, 1, False)
    assert before.completion_possible
    # when: four minutes that day: still below the minimum
    chat(participant, local(3, 9), 4)
    services.compliance_refresh(participant=participant, now=local(3, 9, 10))
    assert not services.participant_progress(participant, now=local(3, 9, 10)).completion_offered
    # when: a session that brings the day to the minimum
    chat(participant, local(3, 18), 1)
    services.compliance_refresh(participant=participant, now=local(3, 18, 5))
    after = services.participant_progress(participant, now=local(3, 18, 5))
    # then: the rule is met, and the completion step is offered
    assert (after.met_count, after.still_needed, after.completion_offered) == (3, 0, True)


def test_a_rule_met_early_opens_the_step_on_the_last_counted_day(req_study, enroll, chat):
    participant = enroll(req_study, now=T0)
    for day in range(3):
        chat(participant, local(day, 12), 5)
    services.compliance_refresh(participant=participant, now=local(2, 20), since=dt.date.min)
    early = services.participant_progress(participant, now=local(2, 20))
    assert early.met_count == 3 and not early.completion_offered
    assert early.completion_opens == 4  # "day 4" on the home page: the last counted day
    assert services.participant_progress(participant, now=local(3, 0, 1)).completion_offered


def test_the_rule_becomes_impossible_after_too_many_missed_days(req_study, enroll):
    participant = enroll(req_study, now=T0)
    result = services.participant_progress(participant, now=local(2, 1))  # days 0, 1 missed
    assert not result.completion_possible and not result.completion_offered


def test_a_weekly_minimum_adds_up_the_days_of_each_study_week(weekly_study, enroll, chat):
    # given: 30 minutes and 4 messages a week; week 0 in three sessions of 10 minutes
    participant = enroll(weekly_study, now=T0)
    for day in (0, 3, 6):
        chat(participant, local(day, 12), 10)
    chat(participant, local(7, 12), 25)  # week 1: 25 minutes only
    services.compliance_refresh(participant=participant, now=local(8, 12), since=dt.date.min)
    result = services.participant_progress(participant, now=local(8, 12))
    # then: week 0 met, week 1 (in progress) not yet
    week0, week1 = result.periods
    assert (week0.first.isoformat(), week0.last.isoformat()) == ("2026-03-02", "2026-03-08")
    assert week0.met and week0.closed and round(week0.active_minutes, 1) == 30.1
    assert not week1.met and not week1.closed
    assert result.current == week1 and result.met_count == 1 and result.still_needed == 2


def test_both_minimums_must_be_met_when_both_are_set():
    req = Requirement(period_days=1, active_minutes=5, messages=3)
    assert req.met(5, 3)
    assert not req.met(30, 2)
    assert not req.met(4.9, 30)
    result = progress(
        req,
        day0=dt.date(2026, 3, 2),
        today=dt.date(2026, 3, 3),
        duration_days=28,
        usage={dt.date(2026, 3, 2): (6.0, 3)},
    )
    assert [p.met for p in result.periods] == [True, False]
    assert result.counted == 28 and not result.requirement.has_completion


def test_the_recompute_command_rebuilds_the_days_from_the_messages(req_study, enroll, chat):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    participant = enroll(req_study, now=T0)
    chat(participant, local(0, 12), 5)
    chat(participant, local(1, 12), 2)
    ComplianceDay.objects.filter(participant=participant).delete()
    out = StringIO()
    call_command("compliance_recompute", req_study.slug, stdout=out)
    assert out.getvalue().strip() == "participants=1 days=2"
    assert days(participant) == {"2026-03-02": (5.03, 6, 0), "2026-03-03": (2.03, 3, 1)}
    with pytest.raises(CommandError, match="slug: no study 'nope'"):
        call_command("compliance_recompute", "nope")


def test_withdrawal_with_deletion_removes_the_days_and_nudges(req_study, enroll, chat):
    from studyplatform.compliance.models import UsageNudge
    from studyplatform.participants.services import participant_withdraw

    participant = enroll(req_study, now=T0)
    chat(participant, local(0, 12), 5)
    services.compliance_refresh(participant=participant, now=local(1, 1), since=dt.date.min)
    assert ComplianceDay.objects.filter(participant=participant).exists()
    participant_withdraw(participant=participant, mode="delete", by="participant")
    assert not ComplianceDay.objects.filter(participant=participant).exists()
    assert not UsageNudge.objects.filter(participant=participant).exists()


def test_download_my_data_includes_the_participants_days(req_study, enroll, chat):
    from studyplatform.core.events import ParticipantDownloadRequested, publish

    participant = enroll(req_study, now=T0)
    chat(participant, local(0, 12), 5)
    services.compliance_refresh(participant=participant, now=local(1, 1), since=dt.date.min)
    tables = {}
    for section in publish(ParticipantDownloadRequested(participant=participant)):
        tables.update(section)
    assert tables["usage_compliance"] == [
        {"date": "2026-03-02", "study_day": 0, "active_minutes": 5.03, "messages": 6}
    ]
