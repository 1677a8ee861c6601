"""The schedule engine with a frozen clock: invitations on time, exactly once, with reminders,
expiry, conditions, withdrawal, protocol changes, a killed worker and concurrent ticks."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import connection

from surveys import engine
from surveys.models import Invitation, ScheduleCursor

SP = ZoneInfo("America/Sao_Paulo")
UTC = dt.UTC
# Tuesday 2026-03-03 10:00 in São Paulo (UTC-3, no DST since 2019)
T0 = dt.datetime(2026, 3, 3, 10, 0, tzinfo=SP).astimezone(UTC)


def at(days=0, hours=0, minutes=0):
    return T0 + dt.timedelta(days=days, hours=hours, minutes=minutes)


@pytest.fixture
def participant(recruiting_study, enroll):
    return enroll(recruiting_study, now=T0, timezone_name="America/Sao_Paulo")


def tick(now, capture=None):
    if capture is None:
        return engine.schedule_tick(now=now)
    with capture(execute=True):
        return engine.schedule_tick(now=now)


def ticks_until(end, step=dt.timedelta(hours=3), start=T0, capture=None):
    t = start
    while t <= end:
        tick(t, capture)
        t += step


def invitations(participant, entry=None):
    qs = Invitation.objects.filter(participant=participant).order_by("opens_at")
    return qs.filter(entry_key=entry) if entry else qs


@pytest.mark.django_db
def test_enrollment_creates_a_cursor_per_time_based_entry(participant):
    cursors = dict(
        ScheduleCursor.objects.filter(participant=participant).values_list(
            "entry_key", "next_occurrence_key"
        )
    )
    assert set(cursors) == {"baseline", "weekly", "mood", "exit"}
    assert cursors["baseline"] == "enrollment" and cursors["weekly"] == "d7"


@pytest.mark.django_db
def test_baseline_is_sent_at_enrollment_once_with_an_email(
    participant, django_capture_on_commit_callbacks
):
    report = tick(at(minutes=1), django_capture_on_commit_callbacks)
    assert report.materialized >= 1 and report.sent >= 1
    baseline = invitations(participant, "baseline").get()
    assert baseline.status == "sent" and baseline.sent_at == at(minutes=1)
    assert baseline.instruments == ["who5", "ucla3", "phq9"]
    assert baseline.protocol_version == participant.study.current_version
    [email] = [m for m in mail.outbox if "questionnaire" in m.subject]
    assert email.to == [participant.identity.email] and "/p/signin/" in email.body
    # then: the same moment ticked again changes nothing
    again = tick(at(minutes=1), django_capture_on_commit_callbacks)
    assert again.materialized == 0 and again.sent == 0
    assert invitations(participant, "baseline").count() == 1
    assert len([m for m in mail.outbox if "questionnaire" in m.subject]) == 1


@pytest.mark.django_db
def test_weekly_surveys_open_at_1800_local_for_three_weeks(participant):
    ticks_until(at(days=28))
    weekly = list(invitations(participant, "weekly"))
    assert [w.occurrence_key for w in weekly] == ["d7", "d14", "d21"]
    assert [w.wave for w in weekly] == [1, 2, 3]
    for w, day in zip(weekly, (10, 17, 24), strict=True):
        assert w.opens_at == dt.datetime(2026, 3, day, 18, 0, tzinfo=SP)
        assert w.closes_at - w.opens_at == dt.timedelta(hours=48)


@pytest.mark.django_db
def test_one_mood_prompt_a_day_within_the_local_window(participant):
    ticks_until(at(days=5, hours=12))
    moods = list(invitations(participant, "mood"))
    days = [m.opens_at.astimezone(SP).date() for m in moods]
    assert len(days) == len(set(days)) >= 5
    for m in moods:
        local = m.opens_at.astimezone(SP).time()
        assert dt.time(9) <= local <= dt.time(21)


@pytest.mark.django_db
def test_reminders_are_sent_up_to_the_maximum_and_then_the_window_expires(
    participant, django_capture_on_commit_callbacks
):
    ticks_until(
        at(hours=80), step=dt.timedelta(hours=1), capture=django_capture_on_commit_callbacks
    )
    baseline = invitations(participant, "baseline").get()
    assert baseline.reminders_sent == 2  # offsets 24 h and 48 h, max 2
    assert len(baseline.reminders_sent_at) == 2
    assert baseline.status == "expired" and baseline.expired_at is not None
    reminders = [m for m in mail.outbox if m.subject.startswith("Reminder")]
    assert len(reminders) >= 2


@pytest.mark.django_db
def test_a_completed_invitation_gets_no_reminder(participant):
    tick(at(minutes=1))
    baseline = invitations(participant, "baseline").get()
    Invitation.objects.filter(pk=baseline.pk).update(
        status="completed", completed_at=at(hours=1), next_reminder_at=None
    )
    ticks_until(at(hours=50), step=dt.timedelta(hours=1))
    baseline.refresh_from_db()
    assert baseline.reminders_sent == 0 and baseline.status == "completed"


@pytest.mark.django_db
def test_withdrawal_stops_invitations_at_once(participant):
    from studyplatform.participants.services import participant_withdraw

    tick(at(minutes=1))
    participant_withdraw(participant=participant, mode="keep", by="participant")
    assert invitations(participant, "baseline").get().status == "cancelled"
    ticks_until(at(days=10), step=dt.timedelta(hours=6))
    assert not invitations(participant).exclude(status="cancelled").exists()
    assert not ScheduleCursor.objects.filter(participant=participant).exists()


@pytest.mark.django_db
def test_previous_closed_condition_skips_a_wave_while_the_last_is_open(participant):
    ticks_until(at(days=8))
    first = invitations(participant, "weekly").get()
    # the first weekly wave is still open when the next one would be sent
    Invitation.objects.filter(pk=first.pk).update(closes_at=at(days=20))
    ticks_until(at(days=15), start=at(days=8))
    second = invitations(participant, "weekly").get(occurrence_key="d14")
    assert second.status == "skipped" and second.skip_reason == "previous_open"


@pytest.mark.django_db
def test_a_worker_killed_mid_tick_loses_nothing(participant):
    # given: a tick claimed the baseline for sending, then died before marking it sent
    tick(at(minutes=0))  # materialize and send
    baseline = invitations(participant, "baseline").get()
    Invitation.objects.filter(pk=baseline.pk).update(
        status="sending", claim="dead", claimed_at=at(minutes=1), sent_at=None
    )
    # when: later ticks run (the sweep waits five minutes for a slow worker)
    tick(at(minutes=3))
    assert invitations(participant, "baseline").get().status == "sending"
    tick(at(minutes=7))
    tick(at(minutes=8))
    # then: the tick after the five minutes sends it, and only that one
    baseline.refresh_from_db()
    assert baseline.status == "sent" and baseline.sent_at == at(minutes=7)


@pytest.mark.django_db
def test_a_protocol_change_affects_future_occurrences_only(participant, owner, rct_doc):
    from studyplatform.studies.services import protocol_version_create

    ticks_until(at(days=8))
    first = invitations(participant, "weekly").get()
    v1 = first.protocol_version
    doc = copy.deepcopy(rct_doc)
    doc["surveys"]["schedule"][1]["rule"].update(every_days=14, start_day=14)
    v2, _ = protocol_version_create(
        study=participant.study, doc=doc, author=owner, change_note="fortnightly"
    )
    engine.schedule_resync(participant.study, now=at(days=8))
    ticks_until(at(days=28), start=at(days=8))
    weekly = list(invitations(participant, "weekly"))
    assert [w.occurrence_key for w in weekly] == ["d7", "d14"]
    assert weekly[0].protocol_version == v1 and weekly[1].protocol_version == v2


@pytest.mark.django_db
def test_exit_survey_opens_on_the_last_study_day(participant):
    ticks_until(at(days=29), step=dt.timedelta(hours=2))
    exit_ = invitations(participant, "exit").get()
    assert exit_.opens_at == dt.datetime(2026, 3, 30, 18, 0, tzinfo=SP)  # day 27


@pytest.mark.django_db
def test_after_messages_rule_invites_when_the_threshold_is_crossed(
    recruiting_study, owner, rct_doc, enroll, django_capture_on_commit_callbacks
):
    from studyplatform.chat import services as chat
    from studyplatform.studies.services import protocol_version_create

    doc = copy.deepcopy(rct_doc)
    doc["surveys"]["schedule"].append(
        {
            "key": "checkin",
            "instruments": ["ema_mood"],
            "rule": {"type": "after_messages", "count": 3},
            "window_hours": 2,
        }
    )
    protocol_version_create(study=recruiting_study, doc=doc, author=owner, change_note="checkin")
    participant = enroll(recruiting_study)
    conversation = chat.conversation_create(participant=participant)
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(3):
            chat.message_send(participant=participant, conversation=conversation, text=f"m{i}")
    checkin = Invitation.objects.get(participant=participant, entry_key="checkin")
    assert checkin.occurrence_key == "messages:3"


def ticks_at_once(count: int, *, now) -> list[Exception]:
    """Run `count` ticks in threads at the same time (each with its own connection); returns
    the errors they raised."""
    errors = []

    def run():
        try:
            engine.schedule_tick(now=now)
        except Exception as exc:  # returned to the caller
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_create_no_duplicates(recruiting_study, enroll):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent ticks need a database with row locking (PostgreSQL)")
    people = [enroll(recruiting_study, now=T0) for _ in range(20)]
    assert ticks_at_once(4, now=at(minutes=1)) == []
    baseline = Invitation.objects.filter(entry_key="baseline")
    assert baseline.count() == len(people)
    assert set(baseline.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_a_participant_who_moves_gets_future_invitations_in_the_new_zone(participant):
    from studyplatform.participants.services import participant_set_timezone

    ticks_until(at(days=8))
    participant_set_timezone(participant=participant, timezone_name="Europe/London")
    engine.reschedule_participant(participant, now=at(days=8))
    ticks_until(at(days=15), start=at(days=8))
    weekly = list(invitations(participant, "weekly"))
    london = ZoneInfo("Europe/London")
    assert weekly[0].opens_at == dt.datetime(2026, 3, 10, 18, 0, tzinfo=SP)  # before the move
    assert weekly[1].opens_at.astimezone(london).time() == dt.time(18, 0)


@pytest.mark.django_db
def test_the_time_zone_page_validates_and_saves(client, participant):
    from studyplatform.participants.session import SESSION_KEY

    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()
    bad = client.post("/p/timezone/", {"timezone": "Mars/Base"})
    assert bad.status_code == 200 and b"Choose a time zone from the list." in bad.content
    client.post("/p/timezone/", {"timezone": "Asia/Tokyo"})
    participant.refresh_from_db()
    assert participant.timezone == "Asia/Tokyo"


# --- bounded ticks ---------------------------------------------------------------------------


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of two rows, and a budget spent at once: each phase does exactly one batch."""
    batches = ("MATERIALIZE_BATCH", "SEND_BATCH", "REMIND_BATCH", "EXPIRE_BATCH", "ADVANCE_BATCH")
    for name in batches:
        monkeypatch.setattr(engine, name, 2)
    monkeypatch.setattr(engine, "TICK_BUDGET_S", 0)


@pytest.mark.django_db
def test_a_tick_bounded_by_its_batch_size_leaves_the_rest_for_the_next_tick(
    recruiting_study, enroll, small_batches
):
    # given: five participants whose baseline survey is due
    people = [enroll(recruiting_study, now=T0) for _ in range(5)]
    baseline = Invitation.objects.filter(entry_key="baseline")
    # when: a tick that may take one batch of two rows per phase runs
    report = tick(at(minutes=1))
    # then: two baselines are created and sent; the other cursors wait
    assert (report.materialized, report.sent) == (2, 2)
    assert baseline.filter(status="sent").count() == 2
    waiting = ScheduleCursor.objects.filter(needs_advance=False, next_opens_at__lte=at(minutes=1))
    assert waiting.count() == 3
    # when: the next ticks run, then: the rest follows, each invitation once
    tick(at(minutes=2))
    tick(at(minutes=3))
    assert baseline.filter(status="sent").count() == len(people) == baseline.count()
    assert tick(at(minutes=4)).materialized == 0
    assert not ScheduleCursor.objects.filter(needs_advance=True).exists()


@pytest.mark.django_db
def test_a_tick_with_budget_left_takes_batch_after_batch(recruiting_study, enroll, monkeypatch):
    # given: batches of two rows but a generous time budget, and five baselines due
    for name in ("MATERIALIZE_BATCH", "SEND_BATCH", "ADVANCE_BATCH"):
        monkeypatch.setattr(engine, name, 2)
    monkeypatch.setattr(engine, "TICK_BUDGET_S", 60)
    for _ in range(5):
        enroll(recruiting_study, now=T0)
    # when: one tick runs
    report = tick(at(minutes=1))
    # then: it does all the work, three batches per phase
    assert (report.materialized, report.sent) == (5, 5)
    assert report.advanced == 5
    assert not ScheduleCursor.objects.filter(needs_advance=True).exists()


@pytest.mark.django_db
def test_an_invitation_knows_its_first_reminder_time_before_it_is_sent(participant, monkeypatch):
    # given: a tick that materializes the baseline but whose send phase has not run yet
    monkeypatch.setattr(engine, "_send", lambda now, report, budget: None)
    tick(at(hours=25))
    baseline = invitations(participant, "baseline").get()
    # then: it is scheduled, with its first reminder time (24 h after opening) already set,
    # and no reminder goes to an invitation that was not sent
    assert baseline.status == "scheduled" and baseline.reminders_sent == 0
    assert baseline.next_reminder_at == baseline.opens_at + dt.timedelta(hours=24)
    monkeypatch.undo()
    # when: the send phase runs a day late, then: the overdue first reminder follows at once
    report = tick(at(hours=25))
    baseline.refresh_from_db()
    assert baseline.status == "sent" and baseline.reminders_sent == 1
    assert baseline.next_reminder_at == baseline.opens_at + dt.timedelta(hours=48)
    # (other entries, e.g. a random EMA prompt, may have opened by then and be sent too)
    assert report.sent == Invitation.objects.filter(participant=participant, status="sent").count()


@pytest.mark.django_db
def test_an_invitation_whose_window_closed_before_it_was_sent_expires_without_an_email(
    participant, django_capture_on_commit_callbacks
):
    # given: no tick ran for four days (the baseline window is 72 hours)
    # when: a tick runs
    report = tick(at(days=4), django_capture_on_commit_callbacks)
    # then: the baseline is created and expired, never sent
    baseline = invitations(participant, "baseline").get()
    assert baseline.status == "expired" and baseline.sent_at is None
    assert report.sent == 0 and report.reminded == 0
    assert not [m for m in mail.outbox if "questionnaire" in m.subject]


# --- reminders -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reminders_due_at_different_times_are_all_sent_by_one_tick(
    recruiting_study, enroll, django_capture_on_commit_callbacks
):
    # given: three baselines opened ten minutes apart, so their reminders are due at different
    # times (24 h and 48 h after each opened)
    people = [enroll(recruiting_study, now=at(minutes=10 * i)) for i in range(3)]
    tick(at(minutes=30))
    sent = list(Invitation.objects.filter(entry_key="baseline").order_by("opens_at"))
    assert [i.next_reminder_at for i in sent] == [
        at(hours=24, minutes=10 * i) for i in range(len(people))
    ]
    mail.outbox.clear()
    # when: one tick runs after all three first reminders are due
    report = tick(at(hours=25), django_capture_on_commit_callbacks)
    # then: each gets its first reminder, and its next one moves to its own second time
    assert report.reminded == 3
    for i, invitation in enumerate(sent):
        invitation.refresh_from_db()
        assert invitation.reminders_sent == 1
        assert invitation.reminders_sent_at == [at(hours=25).isoformat()]
        assert invitation.next_reminder_at == at(hours=48, minutes=10 * i)
    assert len([m for m in mail.outbox if m.subject.startswith("Reminder")]) == 3


@pytest.mark.django_db
def test_a_reminder_already_sent_by_another_tick_is_not_sent_again(participant):
    # given: a tick read the due reminder (count 0) ...
    tick(at(minutes=1))
    now = at(hours=25)
    stale = list(
        Invitation.objects.filter(entry_key="baseline").values_list(
            "id", "reminders_sent", "reminder_times", "reminders_sent_at"
        )
    )
    # ... when a concurrent tick sends it first
    assert tick(now).reminded == 1
    # when: the first tick records its stale read
    changed = engine._record_reminders(stale, now)
    # then: nothing changes, so no second email would be queued
    assert changed == []
    baseline = invitations(participant, "baseline").get()
    assert baseline.reminders_sent == 1 and len(baseline.reminders_sent_at) == 1


@pytest.mark.django_db
def test_a_reminder_is_not_recorded_for_an_invitation_completed_meanwhile(participant):
    # given: a tick read the due reminder, then the participant completed the survey
    tick(at(minutes=1))
    stale = list(
        Invitation.objects.filter(entry_key="baseline").values_list(
            "id", "reminders_sent", "reminder_times", "reminders_sent_at"
        )
    )
    Invitation.objects.filter(entry_key="baseline").update(
        status="completed", next_reminder_at=None
    )
    # when: the tick records its read, then: the completed invitation is left alone
    assert engine._record_reminders(stale, at(hours=25)) == []
    baseline = invitations(participant, "baseline").get()
    assert baseline.reminders_sent == 0 and baseline.next_reminder_at is None


@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_send_each_reminder_once(recruiting_study, enroll, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent ticks need a database with row locking (PostgreSQL)")
    from surveys import tasks

    people = [enroll(recruiting_study, now=T0) for _ in range(20)]
    engine.schedule_tick(now=at(minutes=1))
    reminded: list[int] = []

    def delay(kind, ids):
        if kind == "reminder":
            reminded.extend(ids)

    monkeypatch.setattr(tasks.send_notifications, "delay", delay)
    assert ticks_at_once(4, now=at(hours=25)) == []
    baseline = Invitation.objects.filter(entry_key="baseline")
    assert sorted(baseline.values_list("reminders_sent", flat=True)) == [1] * len(people)
    assert sorted(reminded) == sorted(baseline.values_list("id", flat=True))


# --- event rules -----------------------------------------------------------------------------


def _with_entry(recruiting_study, owner, rct_doc, entry):
    from studyplatform.studies.services import protocol_version_create

    doc = copy.deepcopy(rct_doc)
    doc["surveys"]["schedule"].append(entry)
    protocol_version_create(study=recruiting_study, doc=doc, author=owner, change_note="event")


@pytest.mark.django_db
def test_after_a_chat_session_an_invitation_opens_once_within_the_daily_maximum(
    recruiting_study, owner, rct_doc, enroll
):
    from studyplatform.chat import services as chat
    from studyplatform.chat.models import Message

    # given: an entry after each chat session (at most one a day), and a participant who chats
    _with_entry(
        recruiting_study,
        owner,
        rct_doc,
        {
            "key": "after",
            "instruments": ["ema_mood"],
            "rule": {"type": "after_chat_session", "gap_minutes": 10, "max_per_day": 1},
            "window_hours": 2,
            "reminders": {"offsets_hours": [1], "max": 1},
        },
    )
    participant = enroll(recruiting_study, now=T0, timezone_name="America/Sao_Paulo")
    conversation = chat.conversation_create(participant=participant)
    for minutes in (60, 62):
        chat.message_send(
            participant=participant, conversation=conversation, text="hi", now=at(minutes=minutes)
        )
    last = Message.objects.filter(participant=participant, role="user").latest("id")
    # when: ticks run before and after the session gap (30 minutes in the protocol)
    assert tick(at(minutes=80)).events == 0
    report = tick(at(minutes=93))
    # then: one invitation, 10 minutes after the session's last message, with its reminder time
    assert report.events == 1
    after = invitations(participant, "after").get()
    assert after.occurrence_key == f"session:{last.pk}"
    assert after.opens_at == at(minutes=72) and after.closes_at == at(hours=2, minutes=72)
    assert after.next_reminder_at == at(hours=1, minutes=72)
    recruiting_study.refresh_from_db()
    assert after.protocol_version == recruiting_study.current_version
    # when: the next tick runs, and a second session ends the same local day
    assert tick(at(minutes=94)).events == 0
    chat.message_send(
        participant=participant, conversation=conversation, text="again", now=at(hours=3)
    )
    assert tick(at(hours=4)).events == 0
    # then: still one (max_per_day 1)
    assert invitations(participant, "after").count() == 1


@pytest.mark.django_db
def test_after_days_without_chat_an_invitation_opens_once_per_silence(
    recruiting_study, owner, rct_doc, enroll
):
    # given: an entry after two days without chat, and a participant who never chats
    _with_entry(
        recruiting_study,
        owner,
        rct_doc,
        {
            "key": "quiet",
            "instruments": ["ema_mood"],
            "rule": {"type": "no_chat", "days": 2},
            "window_hours": 24,
        },
    )
    participant = enroll(recruiting_study, now=T0, timezone_name="America/Sao_Paulo")
    hour = T0.replace(minute=0) + dt.timedelta(hours=1)
    # when: hourly ticks run before and after two days of silence
    assert tick(hour + dt.timedelta(days=1)).events == 0
    report = tick(hour + dt.timedelta(days=2))
    # then: one invitation, opening when the silence reached two days
    assert report.events == 1
    quiet = invitations(participant, "quiet").get()
    assert quiet.occurrence_key == "no_chat:enrollment"
    assert quiet.opens_at == T0 + dt.timedelta(days=2)
    # when: the silence goes on, then: no second invitation for it
    assert tick(hour + dt.timedelta(days=2, hours=1)).events == 0
    assert invitations(participant, "quiet").count() == 1
