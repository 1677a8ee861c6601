"""Random EMA prompts: count, window, gaps, determinism and first day."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveys.schedule_rules import ParticipantContext, ScheduleError, all_occurrences

SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ema(per_day: int, between: list[str], gap: int = 0, **rule) -> dict:
    return {
        "key": "mood",
        "instruments": ["ema_mood"],
        "rule": {
            "type": "random_ema",
            "per_day": per_day,
            "between": between,
            "min_gap_minutes": gap,
            **rule,
        },
        "window_hours": 2,
    }


def participant(seed: str = "p-1", enrolled: datetime | None = None, days: int = 14):
    return ParticipantContext.for_study(
        enrolled_at=enrolled or utc(2026, 5, 4, 18),  # Monday 15:00 in São Paulo
        timezone="America/Sao_Paulo",
        duration_days=days,
        seed=seed,
    )


def local_times_by_day(occurrences) -> dict[date, list[datetime]]:
    days: dict[date, list[datetime]] = defaultdict(list)
    for occ in occurrences:
        local = occ.opens_at.astimezone(SAO_PAULO)
        days[local.date()].append(local)
    return days


def test_each_day_after_enrollment_gets_k_prompts_in_the_window_at_least_the_gap_apart():
    # given: 5 prompts between 09:00 and 21:00 at least 90 minutes apart, enrolled at 15:00
    result = all_occurrences(ema(5, ["09:00", "21:00"], gap=90), participant())
    days = local_times_by_day(result)
    # then: days 1..13 (the enrollment day is already inside the window, so it is skipped)
    assert sorted(days) == [date(2026, 5, 4) + timedelta(days=k) for k in range(1, 14)]
    for day, times in days.items():
        assert len(times) == 5
        assert all(time(9) <= t.time() <= time(21) for t in times)
        assert all(b - a >= timedelta(minutes=90) for a, b in pairwise(times))
        assert [
            o.occurrence_key for o in result if o.opens_at.astimezone(SAO_PAULO).date() == day
        ] == [f"{day.isoformat()}#{i}" for i in range(1, 6)]
    assert {o.wave for o in result} == {None}
    assert all(o.closes_at - o.opens_at == timedelta(hours=2) for o in result)


def test_enrolling_before_the_window_opens_keeps_the_enrollment_day():
    early = participant(enrolled=utc(2026, 5, 4, 10))  # 07:00 local
    days = local_times_by_day(all_occurrences(ema(2, ["09:00", "21:00"]), early))
    assert min(days) == date(2026, 5, 4)


def test_the_same_seed_gives_the_same_times_and_other_seeds_or_days_differ():
    rule = ema(3, ["09:00", "21:00"], gap=30)
    first = all_occurrences(rule, participant("p-1"))
    assert all_occurrences(rule, participant("p-1")) == first
    assert [o.opens_at for o in all_occurrences(rule, participant("p-2"))] != [
        o.opens_at for o in first
    ]
    clock_times = [tuple(t.time() for t in ts) for ts in local_times_by_day(first).values()]
    assert len(set(clock_times)) == len(clock_times)


def test_prompts_are_frozen_values_for_a_fixed_seed():
    # Guards reproducibility across Python upgrades: the draw is SHA-256 based, not random.Random.
    # Expected values recomputed by hand from sha256(b"p-1|mood|2026-05-05" + counter).
    result = all_occurrences(ema(2, ["09:00", "21:00"], gap=60), participant(days=2))
    assert [(o.occurrence_key, o.opens_at) for o in result] == [
        ("2026-05-05#1", utc(2026, 5, 5, 12, 29, 54)),
        ("2026-05-05#2", utc(2026, 5, 5, 16, 33, 9)),
    ]


def test_only_the_listed_days_of_the_week_get_prompts():
    result = all_occurrences(ema(1, ["09:00", "21:00"], days=["sat", "sun"]), participant())
    assert {d.weekday() for d in local_times_by_day(result)} == {5, 6}
    assert len(result) == 4


def test_an_exactly_full_window_puts_prompts_at_both_ends():
    # the protocol validator accepts (per_day - 1) * gap == window length
    result = all_occurrences(ema(3, ["09:00", "10:00"], gap=30), participant(days=2))
    assert [t.time() for t in local_times_by_day(result)[date(2026, 5, 5)]] == [
        time(9),
        time(9, 30),
        time(10),
    ]


def test_prompts_that_cannot_fit_are_an_error():
    with pytest.raises(ScheduleError, match="3 prompts 31 minutes apart do not fit"):
        all_occurrences(ema(3, ["09:00", "10:00"], gap=31), participant())


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=22 * 60),
    length=st.integers(min_value=1, max_value=12 * 60),
    per_day=st.integers(min_value=1, max_value=20),
    gap_fraction=st.floats(min_value=0, max_value=1),
    seed=st.text(max_size=8),
)
def test_property_every_day_fits_the_window_count_and_gap(
    start, length, per_day, gap_fraction, seed
):
    # given: any window on one local day and the largest gap scale that still fits
    length = min(length, 24 * 60 - 1 - start)
    gap = int(gap_fraction * (length // max(per_day - 1, 1))) if per_day > 1 else 0
    between = [
        f"{start // 60:02d}:{start % 60:02d}",
        f"{(start + length) // 60:02d}:{(start + length) % 60:02d}",
    ]
    rule = ema(per_day, between, gap=gap)
    # when (São Paulo has no DST in 2026, so local wall-clock gaps are real gaps)
    result = all_occurrences(rule, participant(seed=seed, days=4))
    # then
    lo = time(start // 60, start % 60)
    hi = time((start + length) // 60, (start + length) % 60)
    days = local_times_by_day(result)
    assert len(days) >= 3
    for times in days.values():
        assert len(times) == per_day
        assert all(lo <= t.time() <= hi for t in times)
        spacing = timedelta(minutes=gap) if gap else timedelta(seconds=1)
        assert all(b - a >= spacing for a, b in pairwise(times))
    assert len({o.occurrence_key for o in result}) == len(result)
    assert all_occurrences(rule, participant(seed=seed, days=4)) == result


def test_times_are_uniform_over_the_valid_sets_not_drawn_one_after_another():
    # given: 2 prompts 30 minutes apart in a 60-minute window. Uniform over valid pairs makes
    # the first prompt's offset triangular on [0, 30 min] with mean 10 min; drawing it uniformly
    # first and the second after it would give a mean of 15 min.
    result = all_occurrences(ema(2, ["09:00", "10:00"], gap=30), participant(days=2001))
    firsts = [
        (times[0] - times[0].replace(hour=9, minute=0, second=0)).total_seconds()
        for times in local_times_by_day(result).values()
    ]
    # then (2000 days; the standard error of the mean is about 9.5 s)
    assert len(firsts) == 2000
    assert 550 < sum(firsts) / len(firsts) < 650
