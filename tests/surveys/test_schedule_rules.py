"""Calendar schedule rules: exact UTC instants for frozen inputs, DST, moves, ranges, withdrawal."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from surveys.schedule_rules import (
    Occurrence,
    ParticipantContext,
    ScheduleError,
    all_occurrences,
    local_to_utc,
    occurrences_between,
    study_end_for,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def entry(rule: dict, **extra) -> dict:
    return {"key": extra.pop("key", "s"), "instruments": ["who5"], "rule": rule, **extra}


def ctx(enrolled_at: datetime, tz: str, days: int = 28, **extra) -> ParticipantContext:
    return ParticipantContext.for_study(
        enrolled_at=enrolled_at, timezone=tz, duration_days=days, seed="p-1", **extra
    )


def opens(occurrences: list[Occurrence]) -> list[tuple[str, datetime]]:
    return [(o.occurrence_key, o.opens_at) for o in occurrences]


# --- study end and the rules without DST ----------------------------------------------------


def test_study_end_is_local_midnight_after_duration_days():
    # given: enrollment at 23:30 local on 2026-05-10 in São Paulo (UTC-3, 02:30 UTC next day)
    enrolled = utc(2026, 5, 11, 2, 30)
    # when / then: day 0 is 2026-05-10, so a 28-day study ends at 2026-06-07 00:00 local
    assert study_end_for(enrolled, "America/Sao_Paulo", 28) == utc(2026, 6, 7, 3)


def test_enrollment_rule_opens_after_the_delay_with_the_default_window():
    participant = ctx(utc(2026, 5, 4, 12, 0, 30), "America/Sao_Paulo")
    [occ] = all_occurrences(entry({"type": "enrollment", "delay_minutes": 15}), participant)
    assert occ == Occurrence("s", "enrollment", None, utc(2026, 5, 4, 12, 15, 30),
                             utc(2026, 5, 5, 12, 15, 30), ())  # fmt: skip


def test_enrollment_rule_with_a_delay_past_the_study_end_produces_nothing():
    participant = ctx(utc(2026, 5, 4, 12), "UTC", days=1)
    assert (
        all_occurrences(entry({"type": "enrollment", "delay_minutes": 24 * 60}), participant) == []
    )


def test_weekly_recurring_from_the_example_protocol_in_sao_paulo():
    # given: the companion-rct weekly survey; enrolled Mon 2026-05-04 15:00 local (18:00 UTC)
    weekly = entry(
        {"type": "recurring", "every_days": 7, "at": "18:00", "start_day": 7, "end_day": 21},
        window_hours=48,
        reminders={"offsets_hours": [24], "max": 1},
    )
    participant = ctx(utc(2026, 5, 4, 18), "America/Sao_Paulo")
    # when
    result = all_occurrences(weekly, participant)
    # then: days 7, 14, 21 at 18:00 local = 21:00 UTC (Brazil has no DST since 2019)
    assert [
        (o.occurrence_key, o.wave, o.opens_at, o.closes_at, o.reminder_times) for o in result
    ] == [
        ("d7", 1, utc(2026, 5, 11, 21), utc(2026, 5, 13, 21), (utc(2026, 5, 12, 21),)),
        ("d14", 2, utc(2026, 5, 18, 21), utc(2026, 5, 20, 21), (utc(2026, 5, 19, 21),)),
        ("d21", 3, utc(2026, 5, 25, 21), utc(2026, 5, 27, 21), (utc(2026, 5, 26, 21),)),
    ]


def test_recurring_defaults_start_at_every_days_and_end_on_the_last_study_day():
    # given: every 10 days, no start/end; 28-day study -> days 10 and 20 (day 30 is past the end)
    participant = ctx(utc(2026, 5, 4, 18), "America/Sao_Paulo")
    result = all_occurrences(
        entry({"type": "recurring", "every_days": 10, "at": "08:00"}), participant
    )
    assert opens(result) == [("d10", utc(2026, 5, 14, 11)), ("d20", utc(2026, 5, 24, 11))]


def test_recurring_day_zero_is_skipped_when_its_time_passed_before_enrollment():
    # given: daily at 09:00 from day 0; enrolled 10:00 local, so day 0 never happens
    daily = entry({"type": "recurring", "every_days": 1, "at": "09:00", "start_day": 0})
    participant = ctx(utc(2026, 5, 4, 13), "America/Sao_Paulo", days=3)
    result = all_occurrences(daily, participant)
    # then: the wave numbers stay tied to the day, so the first occurrence is wave 2
    assert [(o.occurrence_key, o.wave, o.opens_at) for o in result] == [
        ("d1", 2, utc(2026, 5, 5, 12)),
        ("d2", 3, utc(2026, 5, 6, 12)),
    ]


def test_weekdays_run_from_after_enrollment_to_study_end():
    # given: enrolled Monday 2026-05-04 10:00 local in New York (EDT, 14:00 UTC), 14 days
    rule = {"type": "weekdays", "days": ["mon", "thu"], "at": "09:30"}
    participant = ctx(utc(2026, 5, 4, 14), "America/New_York", days=14)
    result = all_occurrences(entry(rule), participant)
    # then: Monday 09:30 already passed; Thu 7, Mon 11, Thu 14 (last day is Sun 17)
    assert [(o.occurrence_key, o.wave, o.opens_at) for o in result] == [
        ("2026-05-07", 1, utc(2026, 5, 7, 13, 30)),
        ("2026-05-11", 2, utc(2026, 5, 11, 13, 30)),
        ("2026-05-14", 3, utc(2026, 5, 14, 13, 30)),
    ]


def test_weekday_waves_count_the_enrollment_day_when_it_is_still_ahead():
    rule = {"type": "weekdays", "days": ["mon", "thu"], "at": "09:30"}
    participant = ctx(utc(2026, 5, 4, 12), "America/New_York", days=8)  # 08:00 local Monday
    result = all_occurrences(entry(rule), participant)
    assert [(o.occurrence_key, o.wave) for o in result] == [
        ("2026-05-04", 1),
        ("2026-05-07", 2),
        ("2026-05-11", 3),
    ]


def test_fixed_dates_skip_dates_outside_the_participant_study():
    rule = {
        "type": "fixed_dates",
        "dates": ["2026-06-20", "2026-05-01", "2026-05-20"],
        "at": "12:00",
    }
    participant = ctx(utc(2026, 5, 4, 18), "Europe/London")
    result = all_occurrences(entry(rule), participant)
    # then: waves index the sorted date list: 05-01 (before enrollment) 1, 05-20 2, 06-20 3
    assert [(o.occurrence_key, o.wave, o.opens_at) for o in result] == [
        ("2026-05-20", 2, utc(2026, 5, 20, 11)),
    ]


def test_exit_opens_on_the_last_study_day_at_18_00_by_default():
    participant = ctx(utc(2026, 5, 4, 18), "America/Sao_Paulo")  # last day: 2026-05-31
    [occ] = all_occurrences(entry({"type": "exit"}, window_hours=96), participant)
    assert (occ.occurrence_key, occ.opens_at, occ.closes_at) == (
        "exit",
        utc(2026, 5, 31, 21),
        utc(2026, 6, 4, 21),
    )


def test_exit_after_a_late_enrollment_on_the_last_day_opens_at_enrollment():
    participant = ctx(utc(2026, 5, 4, 23), "America/Sao_Paulo", days=1)  # 20:00 local
    [occ] = all_occurrences(entry({"type": "exit", "at": "18:00"}), participant)
    assert occ.opens_at == utc(2026, 5, 4, 23)


# --- daylight saving time -------------------------------------------------------------------


def test_sao_paulo_had_dst_in_2018_and_abolished_it_in_2019():
    tz = ZoneInfo("America/Sao_Paulo")
    assert datetime(2018, 11, 3, 12, tzinfo=tz).utcoffset() == timedelta(hours=-3)
    assert datetime(2018, 11, 5, 12, tzinfo=tz).utcoffset() == timedelta(hours=-2)
    assert datetime(2019, 2, 18, 12, tzinfo=tz).utcoffset() == timedelta(hours=-3)
    assert datetime(2019, 12, 1, 12, tzinfo=tz).utcoffset() == timedelta(hours=-3)


@pytest.mark.parametrize(
    ("tz", "enrolled", "expected"),
    [
        # London spring forward 2026-03-29 01:00 GMT -> 02:00 BST
        ("Europe/London", utc(2026, 3, 27, 12), [utc(2026, 3, 28, 9), utc(2026, 3, 29, 8)]),
        # London fall back 2026-10-25 02:00 BST -> 01:00 GMT
        ("Europe/London", utc(2026, 10, 23, 12), [utc(2026, 10, 24, 8), utc(2026, 10, 25, 9)]),
        # New York 2026-03-08 EST -> EDT, 2026-11-01 EDT -> EST
        ("America/New_York", utc(2026, 3, 6, 18), [utc(2026, 3, 7, 14), utc(2026, 3, 8, 13)]),
        ("America/New_York", utc(2026, 10, 30, 18), [utc(2026, 10, 31, 13), utc(2026, 11, 1, 14)]),
        # São Paulo DST start 2018-11-04 and end 2019-02-17
        ("America/Sao_Paulo", utc(2018, 11, 2, 18), [utc(2018, 11, 3, 12), utc(2018, 11, 4, 11)]),
        ("America/Sao_Paulo", utc(2019, 2, 15, 18), [utc(2019, 2, 16, 11), utc(2019, 2, 17, 12)]),
    ],
)
def test_a_daily_09_00_survey_stays_at_09_00_local_across_dst(tz, enrolled, expected):
    daily = entry({"type": "recurring", "every_days": 1, "at": "09:00", "end_day": 2})
    result = all_occurrences(daily, ctx(enrolled, tz, days=3))
    assert [o.opens_at for o in result] == expected
    assert {o.opens_at.astimezone(ZoneInfo(tz)).time() for o in result} == {time(9, 0)}


@pytest.mark.parametrize(
    ("tz", "day", "at", "expected"),
    [
        # nonexistent: shifted to the first instant after the gap
        ("Europe/London", date(2026, 3, 29), time(1, 30), utc(2026, 3, 29, 1)),  # 02:00 BST
        ("America/New_York", date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 7)),  # 03:00 EDT
        ("America/Sao_Paulo", date(2018, 11, 4), time(0, 30), utc(2018, 11, 4, 3)),  # 01:00 -02
        # ambiguous: the first of the two instants
        ("Europe/London", date(2026, 10, 25), time(1, 30), utc(2026, 10, 25, 0, 30)),  # BST
        ("America/New_York", date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30)),  # EDT
        ("America/Sao_Paulo", date(2019, 2, 16), time(23, 30), utc(2019, 2, 17, 1, 30)),  # -02
    ],
)
def test_gap_times_move_forward_and_repeated_times_take_the_first(tz, day, at, expected):
    participant = ctx(datetime(2018, 1, 1, tzinfo=UTC), tz, days=3000)
    assert local_to_utc(participant, day, at) == expected


def test_a_recurring_time_inside_the_spring_forward_gap_opens_when_the_gap_ends():
    daily = entry({"type": "recurring", "every_days": 1, "at": "01:30", "end_day": 2})
    result = all_occurrences(daily, ctx(utc(2026, 3, 27, 12), "Europe/London", days=3))
    assert opens(result) == [
        ("d1", utc(2026, 3, 28, 1, 30)),
        ("d2", utc(2026, 3, 29, 1)),  # 01:30 does not exist that night; 02:00 BST does
    ]


# --- participants who move ------------------------------------------------------------------


def test_a_participant_moving_from_london_to_new_york_gets_new_york_times_after_the_move():
    # given: daily 09:00 from London; flies to New York on 2026-05-06, landing 18:00 UTC
    daily = entry({"type": "recurring", "every_days": 1, "at": "09:00"})
    participant = ctx(
        utc(2026, 5, 4, 12),
        "Europe/London",
        days=5,
        timezone_changes=[(utc(2026, 5, 6, 18), "America/New_York")],
    )
    # when
    result = all_occurrences(daily, participant)
    # then: 09:00 BST (08:00 UTC) up to the move, 09:00 EDT (13:00 UTC) after it
    assert opens(result) == [
        ("d1", utc(2026, 5, 5, 8)),
        ("d2", utc(2026, 5, 6, 8)),
        ("d3", utc(2026, 5, 7, 13)),
        ("d4", utc(2026, 5, 8, 13)),
    ]


def test_a_move_westward_never_duplicates_or_moves_the_day_of_the_move():
    # given: the move happens 2026-05-06 10:00 UTC, after 09:00 London but before 09:00 New York
    daily = entry({"type": "recurring", "every_days": 1, "at": "09:00"})
    moved = ctx(
        utc(2026, 5, 4, 12),
        "Europe/London",
        days=5,
        timezone_changes=[(utc(2026, 5, 6, 10), "America/New_York")],
    )
    # then: day 2 keeps its London instant (recording the move changes nothing before it)
    assert opens(all_occurrences(daily, moved))[1:3] == [
        ("d2", utc(2026, 5, 6, 8)),
        ("d3", utc(2026, 5, 7, 13)),
    ]


def test_a_move_eastward_over_the_survey_time_opens_at_the_move():
    # given: in New York until 2026-05-06 12:00 UTC (08:00 EDT), then London (13:00 BST):
    # 09:00 on 2026-05-06 never happens on either clock
    daily = entry({"type": "recurring", "every_days": 1, "at": "09:00"})
    moved = ctx(
        utc(2026, 5, 4, 16),
        "America/New_York",
        days=5,
        timezone_changes=[(utc(2026, 5, 6, 12), "Europe/London")],
    )
    assert opens(all_occurrences(daily, moved))[:3] == [
        ("d1", utc(2026, 5, 5, 13)),
        ("d2", utc(2026, 5, 6, 12)),
        ("d3", utc(2026, 5, 7, 8)),
    ]


# --- ranges, withdrawal, reminders ----------------------------------------------------------


SCHEDULE = [
    entry({"type": "enrollment"}, key="baseline"),
    entry({"type": "recurring", "every_days": 1, "at": "01:30"}, key="daily"),
    entry({"type": "weekdays", "days": ["sun", "wed"], "at": "00:00"}, key="weekly"),
    entry({"type": "fixed_dates", "dates": ["2026-03-29", "2026-04-01"], "at": "01:00"}, key="f"),
    entry({"type": "random_ema", "per_day": 4, "between": ["00:00", "03:00"]}, key="ema"),
    entry({"type": "exit", "at": "23:59"}, key="exit"),
]


@pytest.mark.parametrize("rule_entry", SCHEDULE, ids=lambda e: e["key"])
def test_overlapping_ranges_give_the_same_occurrences_as_the_whole_study(rule_entry):
    # given: a London participant whose study spans the spring-forward night
    participant = ctx(utc(2026, 3, 25, 9, 17), "Europe/London", days=10)
    whole = all_occurrences(rule_entry, participant)
    assert whole
    # when: a beat tick every 7 minutes asks for the next hour (heavily overlapping ranges)
    seen: dict[str, Occurrence] = {}
    tick = participant.enrolled_at - timedelta(hours=1)
    while tick < participant.study_end:
        for occ in occurrences_between(rule_entry, participant, tick, tick + timedelta(hours=1)):
            assert seen.setdefault(occ.occurrence_key, occ) == occ
        tick += timedelta(minutes=7)
    # then: the same occurrences, each key once
    assert sorted(seen.values(), key=lambda o: (o.opens_at, o.occurrence_key)) == whole
    assert len({o.occurrence_key for o in whole}) == len(whole)


def test_a_range_is_half_open():
    daily = entry({"type": "recurring", "every_days": 1, "at": "09:00"})
    participant = ctx(utc(2026, 5, 4, 12), "UTC")
    assert opens(
        occurrences_between(daily, participant, utc(2026, 5, 5, 9), utc(2026, 5, 6, 9))
    ) == [("d1", utc(2026, 5, 5, 9))]


def test_withdrawal_cuts_every_occurrence_at_or_after_it():
    daily = entry(
        {"type": "recurring", "every_days": 1, "at": "09:00"},
        reminders={"offsets_hours": [2, 4]},
    )
    participant = ctx(utc(2026, 5, 4, 12), "UTC", withdrawn_at=utc(2026, 5, 7, 11))
    result = all_occurrences(daily, participant)
    assert [o.occurrence_key for o in result] == ["d1", "d2", "d3"]
    assert result[-1].reminder_times == ()  # 11:00 and 13:00 are not before the withdrawal
    assert all_occurrences(entry({"type": "exit"}), participant) == []
    withdrawn_at_nine = ctx(utc(2026, 5, 4, 12), "UTC", withdrawn_at=utc(2026, 5, 5, 9))
    assert all_occurrences(daily, withdrawn_at_nine) == []


def test_reminders_are_capped_by_max_and_fall_before_closing():
    survey = entry(
        {"type": "enrollment"},
        window_hours=30,
        reminders={"offsets_hours": [48, 6, 24, 12], "max": 2},
    )
    [occ] = all_occurrences(survey, ctx(utc(2026, 5, 4, 12), "UTC"))
    assert occ.reminder_times == (utc(2026, 5, 4, 18), utc(2026, 5, 5, 0))
    unlimited = entry(
        {"type": "enrollment"}, window_hours=30, reminders={"offsets_hours": [48, 6, 24]}
    )
    [occ] = all_occurrences(unlimited, ctx(utc(2026, 5, 4, 12), "UTC"))
    assert occ.reminder_times == (utc(2026, 5, 4, 18), utc(2026, 5, 5, 12))


# --- bad input ------------------------------------------------------------------------------


def test_naive_datetimes_and_unknown_zones_are_rejected():
    with pytest.raises(ScheduleError, match="enrolled_at must be a timezone-aware datetime"):
        ctx(datetime(2026, 5, 4, 12), "UTC")
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        ctx(utc(2026, 5, 4, 12), "Mars/Olympus")


def test_an_unknown_rule_type_is_rejected():
    with pytest.raises(ScheduleError, match="schedule entry 's' has no known rule type"):
        all_occurrences(entry({"type": "hourly"}), ctx(utc(2026, 5, 4, 12), "UTC"))


def test_event_rules_are_not_expanded_by_the_calendar_functions():
    rule = {"type": "after_chat_session", "gap_minutes": 5}
    assert all_occurrences(entry(rule), ctx(utc(2026, 5, 4, 12), "UTC")) == []
