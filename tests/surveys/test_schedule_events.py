"""Event-driven schedule rules: after a chat session, after N messages, after days of silence."""

from __future__ import annotations

from datetime import UTC, datetime

from surveys.schedule_rules import (
    ParticipantContext,
    local_day_bounds,
    occurrence_after_messages,
    occurrence_after_session,
    occurrence_no_chat,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def entry(rule: dict) -> dict:
    return {"key": "e", "instruments": ["who5"], "rule": rule, "window_hours": 6}


def participant(**extra) -> ParticipantContext:
    return ParticipantContext.for_study(
        enrolled_at=utc(2026, 5, 4, 12),
        timezone="America/Sao_Paulo",
        duration_days=28,
        seed="p-1",
        **extra,
    )


AFTER_SESSION = entry({"type": "after_chat_session", "gap_minutes": 10, "max_per_day": 2})


def test_a_session_invitation_opens_the_gap_after_the_session_ends():
    occ = occurrence_after_session(AFTER_SESSION, participant(), 41, utc(2026, 5, 6, 20, 55))
    assert occ is not None
    assert (occ.occurrence_key, occ.opens_at, occ.closes_at) == (
        "session:41",
        utc(2026, 5, 6, 21, 5),
        utc(2026, 5, 7, 3, 5),
    )


def test_a_session_invitation_is_skipped_once_the_local_day_has_max_per_day():
    ctx = participant()
    assert (
        occurrence_after_session(AFTER_SESSION, ctx, 42, utc(2026, 5, 6, 21), earlier_same_day=2)
        is None
    )
    assert occurrence_after_session(AFTER_SESSION, ctx, 42, utc(2026, 5, 6, 21), earlier_same_day=1)


def test_local_day_bounds_follow_the_participant_zone():
    # 2026-05-07 01:00 UTC is still 2026-05-06 (22:00) in São Paulo
    assert local_day_bounds(participant(), utc(2026, 5, 7, 1)) == (
        utc(2026, 5, 6, 3),
        utc(2026, 5, 7, 3),
    )


def test_a_session_ending_after_withdrawal_or_study_end_gives_nothing():
    withdrawn = participant(withdrawn_at=utc(2026, 5, 6, 21))
    assert occurrence_after_session(AFTER_SESSION, withdrawn, 1, utc(2026, 5, 6, 20, 55)) is None
    assert occurrence_after_session(AFTER_SESSION, participant(), 1, utc(2026, 6, 1, 3)) is None


def test_message_thresholds_fire_once_without_repeat():
    once = entry({"type": "after_messages", "count": 10})
    ctx = participant()
    assert occurrence_after_messages(once, ctx, 9, utc(2026, 5, 5, 9)) is None
    occ = occurrence_after_messages(once, ctx, 10, utc(2026, 5, 5, 9), previous_count=9)
    assert (occ.occurrence_key, occ.opens_at) == ("messages:10", utc(2026, 5, 5, 9))
    assert occurrence_after_messages(once, ctx, 25, utc(2026, 5, 5, 9), previous_count=24) is None


def test_repeating_message_thresholds_fire_at_every_multiple():
    repeat = entry({"type": "after_messages", "count": 10, "repeat": True})
    ctx = participant()
    at = utc(2026, 5, 5, 9)
    assert occurrence_after_messages(repeat, ctx, 19, at, previous_count=18) is None
    assert occurrence_after_messages(repeat, ctx, 20, at, previous_count=19).occurrence_key == (
        "messages:20"
    )
    # a batch crossing 30 and 40 at once gets one invitation, for the highest threshold
    assert occurrence_after_messages(repeat, ctx, 41, at, previous_count=29).occurrence_key == (
        "messages:40"
    )
    # without previous_count the reached threshold comes back; the unique key deduplicates
    assert occurrence_after_messages(repeat, ctx, 23, at).occurrence_key == "messages:20"


def test_silence_fires_once_the_days_have_passed_with_a_key_per_silence_period():
    silence = entry({"type": "no_chat", "days": 3})
    ctx = participant()
    last_chat = utc(2026, 5, 6, 20, 15, 7)
    assert occurrence_no_chat(silence, ctx, last_chat, utc(2026, 5, 9, 20, 15)) is None
    first = occurrence_no_chat(silence, ctx, last_chat, utc(2026, 5, 9, 20, 15, 7))
    later = occurrence_no_chat(silence, ctx, last_chat, utc(2026, 5, 11, 8))
    assert first == later
    assert (first.occurrence_key, first.opens_at) == (
        "no_chat:2026-05-06T20:15:07Z",
        utc(2026, 5, 9, 20, 15, 7),
    )


def test_silence_since_enrollment_counts_from_enrollment():
    silence = entry({"type": "no_chat", "days": 2})
    occ = occurrence_no_chat(silence, participant(), None, utc(2026, 5, 7))
    assert (occ.occurrence_key, occ.opens_at) == ("no_chat:enrollment", utc(2026, 5, 6, 12))
