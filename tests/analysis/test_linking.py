"""Linking usage windows to survey occasions, on small hand-built frames (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.features import daily_usage
from analysis.linking import (
    assign_waves,
    attrition_summary,
    link_usage_to_outcomes,
    pre_enrollment_daily,
)


def T(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


PARTICIPANTS = pd.DataFrame(
    {
        "participant": ["a", "b", "c"],
        "timezone": ["UTC", "UTC", "America/Sao_Paulo"],
        "enrolled_at": [T("2025-01-01 10:00")] * 3,
        "arm": ["legacy", "current", "legacy"],
        "language": ["en"] * 3,
    }
)


def messages(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "participant": [p for p, _ in rows],
            "conversation": [p for p, _ in rows],
            "role": ["user"] * len(rows),
            "created_at": [T(t) for _, t in rows],
            "text": [None] * len(rows),
            "latency_ms": [np.nan] * len(rows),
            "imported": [False] * len(rows),
        }
    )


def responses(rows: list[tuple[str, str, int, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "participant": [r[0] for r in rows],
            "entry": ["weekly"] * len(rows),
            "occurrence": [r[1] for r in rows],
            "wave": [r[2] for r in rows],
            "submitted_at": [T(r[3]) for r in rows],
            "instrument": ["who5"] * len(rows),
            "scores": [{"percentage": r[4], "raw": r[4] / 4} for r in rows],
        }
    )


def link(msg_rows, resp_rows, **kwargs) -> pd.DataFrame:
    daily = daily_usage(messages(msg_rows), PARTICIPANTS)
    return link_usage_to_outcomes(daily, PARTICIPANTS, responses(resp_rows), **kwargs)


def test_the_window_starts_inclusive_and_excludes_the_survey_day():
    # given: messages on the first window day, the last window day and the survey day itself
    msg_rows = [
        ("a", "2024-12-31 23:59"),  # the day before the window
        ("a", "2025-01-01 00:00"),  # first day of the window (inclusive)
        ("a", "2025-01-07 23:59"),  # last day of the window
        ("a", "2025-01-08 09:00"),  # survey day: excluded
    ]
    # when: a survey is submitted on 8 January
    linked = link(msg_rows, [("a", "d7", 1, "2025-01-08 18:00", 40)])
    # then: the window is [1 Jan, 8 Jan) and holds exactly two messages
    row = linked.iloc[0]
    assert row["start"] == pd.Timestamp("2025-01-01")
    assert row["end"] == pd.Timestamp("2025-01-08")
    assert row["messages_sent"] == 2
    assert row["days_active"] == 2
    assert row["who5.percentage"] == 40
    assert row["who5.raw"] == 10


def test_the_window_uses_the_participants_local_date():
    # given: c lives in São Paulo (UTC−3); 02:00 UTC on 8 Jan is 23:00 on 7 Jan locally
    msg_rows = [("c", "2025-01-08 02:00")]
    # when: c submits at 01:00 UTC on 15 Jan = 22:00 on 14 Jan local
    linked = link(msg_rows, [("c", "d14", 2, "2025-01-15 01:00", 50)])
    # then: the window is the local 7 days before 14 Jan and includes the local 7 Jan message
    row = linked.iloc[0]
    assert row["end"] == pd.Timestamp("2025-01-14")
    assert row["messages_sent"] == 1


def test_no_usage_in_a_window_gives_zero_counts_not_nan():
    # given: b never chatted
    linked = link([("a", "2025-01-03 12:00")], [("b", "d7", 1, "2025-01-08 18:00", 30)])
    row = linked.iloc[0]
    # then: counts are zero, ratios undefined
    for column in ("messages_sent", "days_active", "sessions", "messages_per_day", "words_sent"):
        assert row[column] == 0, column
    assert np.isnan(row["night_share"])


def test_within_and_between_parts_are_exact():
    # given: a sends 3, 1 and 2 messages in three weekly windows
    msg_rows = (
        [("a", "2025-01-02 12:00")] * 3
        + [("a", "2025-01-09 12:00")]
        + [("a", "2025-01-16 12:00")] * 2
    )
    resp_rows = [
        ("a", "d7", 1, "2025-01-08 18:00", 40),
        ("a", "d14", 2, "2025-01-15 18:00", 48),
        ("a", "d21", 3, "2025-01-22 18:00", 44),
    ]
    # when
    linked = link(msg_rows, resp_rows, predictors=["messages_sent"])
    # then: the person mean is 2; within = x - 2
    assert linked["messages_sent"].tolist() == [3, 1, 2]
    assert linked["messages_sent_between"].tolist() == [2.0, 2.0, 2.0]
    assert linked["messages_sent_within"].tolist() == [1.0, -1.0, 0.0]


def invitations(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Every scheduled occasion (answered or not): participant, occurrence, opening."""
    return pd.DataFrame(
        {
            "participant": [r[0] for r in rows],
            "entry": ["weekly"] * len(rows),
            "occurrence": [r[1] for r in rows],
            "opens_at": [T(r[2]) for r in rows],
        }
    )


def test_lags_come_from_the_previous_occasion_and_a_missed_one_leaves_nan():
    # given: a was invited four times and answered waves 1, 2 and 4 (wave 3 missed)
    msg_rows = [("a", "2025-01-02 12:00"), ("a", "2025-01-09 12:00"), ("a", "2025-01-10 12:00")]
    resp_rows = [
        ("a", "d7", 1, "2025-01-08 18:00", 40),
        ("a", "d14", 2, "2025-01-15 18:00", 48),
        ("a", "d28", 4, "2025-01-29 18:00", 60),
    ]
    invited = invitations(
        [
            ("a", "d7", "2025-01-08 09:00"),
            ("a", "d14", "2025-01-15 09:00"),
            ("a", "d21", "2025-01-22 09:00"),
            ("a", "d28", "2025-01-29 09:00"),
        ]
    )
    # when
    linked = link(msg_rows, resp_rows, invitations=invited)
    # then: wave 2 lags wave 1; wave 4 has no wave-3 answer to lag
    assert linked["wave"].tolist() == [1.0, 2.0, 4.0]
    assert linked["occasion"].tolist() == [0.0, 1.0, 3.0]
    assert np.isnan(linked.loc[0, "who5.percentage_lag"])
    assert linked.loc[1, "who5.percentage_lag"] == 40
    assert linked.loc[1, "messages_sent_lag"] == 1
    assert np.isnan(linked.loc[2, "who5.percentage_lag"])
    assert np.isnan(linked.loc[2, "messages_sent_lag"])
    # and the missing wave simply has no row
    assert len(linked) == 3


def test_a_monthly_schedule_still_has_lags():
    # given: monthly surveys (every 30 days): waves are rounded weeks 4, 9, 13, never w and w-1
    msg_rows = [("a", "2025-01-27 12:00"), ("b", "2025-01-28 12:00")]
    resp_rows = [
        (person, f"m{k}", wave, submitted, 40 + k)
        for person in ("a", "b")
        for k, wave, submitted in (
            (1, 4, "2025-01-31 18:00"),
            (2, 9, "2025-03-02 18:00"),
            (3, 13, "2025-04-01 18:00"),
        )
    ]
    # when: linked without invitations (as the export does)
    linked = link(msg_rows, resp_rows)
    # then: each month lags the month before, by occasion order
    a = linked[linked["participant"] == "a"]
    assert a["wave"].tolist() == [4.0, 9.0, 13.0]
    assert a["occasion"].tolist() == [0.0, 1.0, 2.0]
    assert a["who5.percentage_lag"].tolist()[1:] == [41, 42]
    assert a["messages_sent_lag"].tolist()[1:] == [1, 0]


def test_a_window_that_starts_before_enrolment_is_missing_not_zero():
    # given: b enrolled on 1 Jan; a baseline survey on enrolment day and a week-1 survey
    resp_rows = [
        ("b", "baseline", 0, "2025-01-01 11:00", 30),
        ("b", "d7", 1, "2025-01-08 18:00", 50),
    ]
    msg_rows = [("b", "2025-01-03 12:00")]
    # when
    linked = link(msg_rows, resp_rows)
    # then: the baseline window (25 Dec – 1 Jan) lies before enrolment: every usage column NaN
    baseline, week1 = linked.iloc[0], linked.iloc[1]
    assert bool(baseline["window_before_enrollment"]) is True
    for column in ("messages_sent", "days_active", "sessions", "messages_per_day"):
        assert np.isnan(baseline[column]), column
    assert np.isnan(baseline["messages_sent_within"])
    # and the first week after enrolment (starting on enrolment day) is observed
    assert bool(week1["window_before_enrollment"]) is False
    assert week1["messages_sent"] == 1
    # and the person mean is over observed windows only, so the within part is 0, not +0.5
    assert week1["messages_sent_between"] == 1
    assert week1["messages_sent_within"] == 0
    assert np.isnan(week1["messages_sent_lag"])
    assert bool(week1["window_before_enrollment_lag"]) is True


def test_imported_history_is_a_baseline_covariate_never_part_of_a_window():
    # given: a imported 3 messages from the week before enrolment and 1 from long before;
    # b imported nothing
    frame = messages(
        [
            ("a", "2024-12-27 12:00"),
            ("a", "2024-12-28 12:00"),
            ("a", "2024-12-31 20:00"),
            ("a", "2024-10-01 12:00"),
            ("a", "2025-01-03 12:00"),
            ("b", "2025-01-04 12:00"),
        ]
    )
    frame.loc[:3, "imported"] = True
    daily = daily_usage(frame, PARTICIPANTS)
    pre = pre_enrollment_daily(frame, PARTICIPANTS)
    resp_rows = [
        ("a", "baseline", 0, "2025-01-01 11:00", 30),
        ("a", "d7", 1, "2025-01-08 18:00", 40),
        ("b", "d7", 1, "2025-01-08 18:00", 45),
    ]
    # when
    linked = link_usage_to_outcomes(
        daily, PARTICIPANTS, responses(resp_rows), pre_daily=pre, predictors=["messages_sent"]
    )
    # then: the imported messages are in no window (a's baseline stays missing, week 1 has 1)
    a = linked[linked["participant"] == "a"]
    assert np.isnan(a["messages_sent"].iloc[0])
    assert a["messages_sent"].iloc[1] == 1
    # and a's baseline covariate counts the imported week before enrolment, on every row
    assert a["messages_sent_pre"].tolist() == [3, 3]
    # and b, with no imported history, has an unknown baseline, not a zero one
    b = linked[linked["participant"] == "b"]
    assert np.isnan(b["messages_sent_pre"].iloc[0])


def test_time_is_measured_from_enrolment_to_the_actual_completion():
    # given: the week-1 survey opened on day 7 but was answered on day 10 at 22:00
    linked = link([], [("a", "d7", 1, "2025-01-11 22:00", 40)])
    # then: wave stays the schedule's, weeks is the completion's
    assert linked.loc[0, "wave"] == 1
    assert linked.loc[0, "weeks"] == pytest.approx((10 + 12 / 24) / 7)


def test_instruments_of_one_occasion_become_one_row():
    # given: who5 and ucla3 answered in the same weekly occasion
    rows = responses([("a", "d7", 1, "2025-01-08 18:00", 40)])
    ucla = rows.assign(
        instrument="ucla3", scores=[{"total": 5}], submitted_at=[T("2025-01-08 18:05")]
    )
    daily = daily_usage(messages([("a", "2025-01-02 12:00")]), PARTICIPANTS)
    # when
    linked = link_usage_to_outcomes(daily, PARTICIPANTS, pd.concat([rows, ucla]))
    # then
    assert len(linked) == 1
    assert linked.loc[0, "who5.percentage"] == 40
    assert linked.loc[0, "ucla3.total"] == 5
    assert linked.loc[0, "arm"] == "legacy"


def test_waves_are_rounded_weeks_since_enrolment():
    frame = pd.DataFrame(
        {
            "participant": ["a", "a", "a"],
            "opens_at": [T("2025-01-01 10:00"), T("2025-01-08 18:00"), T("2025-01-28 18:00")],
        }
    )
    assert assign_waves(frame, PARTICIPANTS).tolist() == [0, 1, 4]


def test_attrition_summary_counts_last_completed_wave_by_arm():
    invitations = pd.DataFrame(
        {
            "participant": ["a", "a", "b", "b", "c"],
            "wave": [1, 2, 1, 2, 1],
            "status": ["completed", "completed", "completed", "expired", "expired"],
        }
    )
    summary = attrition_summary(PARTICIPANTS, invitations)
    everyone = summary[summary["by"] == "all"].set_index("last_wave")["n"].to_dict()
    assert everyone == {-1: 1, 1: 1, 2: 1}
    legacy = summary[(summary["by"] == "arm") & (summary["group"] == "legacy")]
    assert legacy.set_index("last_wave")["share"].to_dict() == pytest.approx({-1: 0.5, 2: 0.5})
