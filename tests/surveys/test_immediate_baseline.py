"""The baseline survey is due the moment consent commits, not a tick later; the tick remains the
safety net and never makes a second invitation or email."""

from __future__ import annotations

import logging
import threading

import pytest
from django.core import mail
from django.db import DatabaseError, connection
from django.utils import timezone

from studyplatform.participants.models import Participant
from surveys import engine, hooks
from surveys.models import Invitation

# The columns a tick copies from the schedule cursor into a new invitation.
OCCURRENCE = (
    "entry_key",
    "occurrence_key",
    "wave",
    "instruments",
    "protocol_version_id",
    "opens_at",
    "closes_at",
    "reminder_times",
    "next_reminder_at",
)


def consent_through_pages(client, study, email="rui@example.org"):
    slug = study.slug
    client.get(f"/s/{slug}/")
    client.post(f"/s/{slug}/screener/", {"age": "34", "uses_chatbots": "yes", "gender": "man"})
    return client.post(
        f"/s/{slug}/consent/",
        {
            "c_agree": "on",
            "c_adult": "on",
            "c_share_chats": "on",
            "signature_name": "Rui Lima",
            "email": email,
            "timezone": "Europe/Lisbon",
        },
    )


def invitation_emails():
    return [m for m in mail.outbox if "questionnaire" in m.subject]


@pytest.mark.django_db(transaction=True)
def test_a_participant_who_consents_sees_the_baseline_survey_on_the_first_page_load(
    client, recruiting_study
):
    # given: a person who passes the screener and consents through the pages (no tick runs)
    consent = consent_through_pages(client, recruiting_study)
    assert consent.status_code == 302 and consent["Location"] == "/p/welcome/"
    # when: they open their home page for the first time
    home = client.get("/p/")
    # then: the baseline questionnaire is due there, and its email has gone out
    baseline = Invitation.objects.get(entry_key="baseline")
    assert baseline.status == Invitation.Status.SENT
    assert b"Nothing is due right now." not in home.content
    assert f"/p/surveys/{baseline.pk}/".encode() in home.content
    [email] = invitation_emails()
    assert email.to == ["rui@example.org"] and "/p/signin/" in email.body


@pytest.mark.django_db(transaction=True)
def test_a_tick_after_consent_makes_no_second_invitation_or_email(client, recruiting_study):
    # given: a participant whose baseline invitation was made when their consent committed
    consent_through_pages(client, recruiting_study)
    # when: the beat tick runs afterwards
    report = engine.schedule_tick()
    # then: it finds nothing left to do for the baseline: one invitation, one email
    assert report.sent == 0
    assert Invitation.objects.filter(entry_key="baseline").count() == 1
    assert len(invitation_emails()) == 1


@pytest.mark.django_db
def test_a_tick_before_the_enrollment_pass_makes_it_a_no_op(
    recruiting_study, enroll, django_capture_on_commit_callbacks
):
    # given: an enrollment whose after-commit pass has not run yet
    with django_capture_on_commit_callbacks() as after_enrollment:
        participant = enroll(recruiting_study)
    assert after_enrollment  # the pass is registered to run after the consent commits
    # when: a tick gets there first, then the enrollment's pass runs
    with django_capture_on_commit_callbacks(execute=True):
        engine.schedule_tick()
    with django_capture_on_commit_callbacks(execute=True):
        for callback in after_enrollment:
            callback()
    # then: one invitation, sent once, one email
    baseline = Invitation.objects.get(participant=participant, entry_key="baseline")
    assert baseline.status == Invitation.Status.SENT
    assert len(invitation_emails()) == 1


@pytest.mark.django_db
def test_the_invitation_made_at_enrollment_is_the_one_the_tick_would_make(
    recruiting_study, enroll, django_capture_on_commit_callbacks
):
    # given: two participants enrolled at the same moment in the same time zone; the first
    # gets the after-commit pass, the second's is dropped (as if the process died)
    enrolled_at = timezone.now().replace(microsecond=0)
    with django_capture_on_commit_callbacks(execute=True):
        immediate = enroll(recruiting_study, now=enrolled_at)
    with django_capture_on_commit_callbacks(execute=False):
        later = enroll(recruiting_study, now=enrolled_at)
    assert Invitation.objects.filter(participant=immediate, entry_key="baseline").exists()
    assert not Invitation.objects.filter(participant=later).exists()
    # when: the tick creates the second one's
    with django_capture_on_commit_callbacks(execute=True):
        report = engine.schedule_tick()
    assert report.materialized >= 1
    # then: both invitations have the same occurrence: times, wave, instruments, version
    made_now = Invitation.objects.filter(participant=immediate, entry_key="baseline")
    made_by_tick = Invitation.objects.filter(participant=later, entry_key="baseline")
    assert made_now.values(*OCCURRENCE).get() == made_by_tick.values(*OCCURRENCE).get()
    assert made_now.get().status == made_by_tick.get().status == Invitation.Status.SENT
    assert made_now.get().opens_at == enrolled_at
    assert sorted(m.to[0] for m in invitation_emails()) == sorted(
        [immediate.identity.email, later.identity.email]
    )


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_consent_keeps_the_enrollment_and_the_tick_catches_up(
    client, recruiting_study, monkeypatch, caplog
):
    # given: the database refuses the immediate pass (after the consent has committed)
    def refuse(*args, **kwargs):
        raise DatabaseError("database is locked")

    monkeypatch.setattr(engine, "_materialize_batch", refuse)
    # when: a person consents
    with caplog.at_level(logging.ERROR, logger="surveys.hooks"):
        consent = consent_through_pages(client, recruiting_study)
    # then: they are enrolled and signed in all the same; the failure is logged
    assert consent.status_code == 302 and consent["Location"] == "/p/welcome/"
    participant = Participant.objects.get()
    assert participant.status == Participant.Status.ACTIVE
    assert "the next tick will" in caplog.text
    home = client.get("/p/")
    assert home.status_code == 200 and b"Nothing is due right now." in home.content
    assert not Invitation.objects.exists() and invitation_emails() == []
    # when: the database recovers and the next tick runs
    monkeypatch.undo()
    engine.schedule_tick()
    # then: the tick makes and sends the baseline invitation, once
    baseline = Invitation.objects.get(participant=participant, entry_key="baseline")
    assert baseline.status == Invitation.Status.SENT
    assert len(invitation_emails()) == 1
    assert f"/p/surveys/{baseline.pk}/".encode() in client.get("/p/").content


@pytest.mark.django_db(transaction=True)
def test_enrollment_passes_and_ticks_at_the_same_moment_make_each_invitation_once(
    recruiting_study, enroll, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent passes need a database with row locking (PostgreSQL)")
    # given: twenty enrollments whose after-commit passes are held back
    held = []
    monkeypatch.setattr(hooks, "_schedule_now", held.append)
    people = [enroll(recruiting_study) for _ in range(20)]
    monkeypatch.undo()
    assert len(held) == len(people)
    # when: each pass runs in its own thread while three ticks run in theirs
    errors = []
    start = threading.Barrier(len(held) + 3)

    def run(work):
        try:
            start.wait()
            work()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    work = [lambda pid=pid: hooks._schedule_now(pid) for pid in held]
    work += [engine.schedule_tick] * 3
    threads = [threading.Thread(target=run, args=(w,)) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then: one baseline invitation per participant, each sent with exactly one email
    assert errors == []
    baseline = Invitation.objects.filter(entry_key="baseline")
    assert baseline.count() == len(people)
    assert set(baseline.values_list("status", flat=True)) == {Invitation.Status.SENT}
    assert sorted(m.to[0] for m in invitation_emails()) == sorted(p.identity.email for p in people)
