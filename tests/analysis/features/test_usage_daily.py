"""Daily usage features on hand-built timelines with exact expected values."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from helpers_features import day, empty_messages, messages, participants

from analysis.features import (
    DAILY_COLUMNS,
    DAILY_USAGE_COLUMNS,
    IMPORTED_COLUMNS,
    daily_features,
    daily_usage,
    imported_baseline,
)


def _london_day():
    # Europe/London in January is UTC+0, so UTC clock times are local clock times.
    return messages(
        [
            ("p1", "c1", "user", "2024-01-15 10:00"),
            ("p1", "c1", "assistant", "2024-01-15 10:00:30", "hi", 500.0),
            ("p1", "c1", "user", "2024-01-15 10:20"),
            ("p1", "c1", "user", "2024-01-15 10:50"),  # exactly 30 min later: same session
            ("p1", "c2", "user", "2024-01-15 11:21"),  # 31 min later: new session
            ("p1", "c2", "user", "2024-01-15 15:00"),
        ]
    )


def test_sessions_split_when_the_gap_exceeds_thirty_minutes():
    # given: a day with gaps of 19.5, 30, 31 minutes and 3.5 hours
    msgs, people = _london_day(), participants(("p1", "Europe/London"))
    # when
    row = day(daily_usage(msgs, people), "p1", "2024-01-15")
    # then: 10:00-10:50 (50 min), 11:21 alone (1 min), 15:00 alone (1 min)
    assert row["sessions"] == 3
    assert row["active_minutes"] == pytest.approx(52.0)
    assert row["session_mean_minutes"] == pytest.approx(52.0 / 3)
    assert row["session_median_minutes"] == pytest.approx(1.0)
    assert row["messages_sent"] == 5
    assert row["conversations"] == 2


def test_session_gap_and_single_message_minutes_are_configurable():
    msgs, people = _london_day(), participants(("p1", "Europe/London"))
    row = day(daily_usage(msgs, people, session_gap_minutes=20), "p1", "2024-01-15")
    # 10:00-10:20 (20), 10:50 (1), 11:21 (1), 15:00 (1)
    assert row["sessions"] == 4
    assert row["active_minutes"] == pytest.approx(23.0)
    row = day(
        daily_usage(msgs, people, session_gap_minutes=20, min_session_minutes=0),
        "p1",
        "2024-01-15",
    )
    assert row["active_minutes"] == pytest.approx(20.0)


def test_counts_words_conversations_and_reply_latency_for_a_day():
    # given: words counted from text (no words column), one message with withheld text
    msgs = messages(
        [
            ("p1", "a", "user", "2024-01-15 09:00", "hello there"),
            ("p1", "a", "assistant", "2024-01-15 09:00:05", "reply", 100.0),
            ("p1", "a", "user", "2024-01-15 09:01", "one two  three"),
            ("p1", "a", "assistant", "2024-01-15 09:01:05", "reply", 300.0),
            ("p1", "b", "user", "2024-01-15 09:02", None),
            ("p1", "b", "assistant", "2024-01-15 09:02:05", "reply", 200.0),
        ]
    )
    row = day(daily_usage(msgs, participants(("p1", "UTC"))), "p1", "2024-01-15")
    assert row["messages_sent"] == 3
    assert row["words_sent"] == 5
    assert row["conversations"] == 2
    assert row["assistant_messages"] == 3
    assert row["reply_latency_n"] == 3
    assert row["reply_latency_ms_sum"] == pytest.approx(600.0)
    assert row["median_reply_latency_ms"] == pytest.approx(200.0)
    assert bool(row["active"]) is True


def test_a_words_column_is_used_when_given():
    msgs = messages(
        [
            ("p1", "a", "user", "2024-01-15 09:00", "hello there"),
            ("p1", "a", "user", "2024-01-15 09:01", None),
        ],
        words=[7, 4],
    )
    row = day(daily_usage(msgs, participants(("p1", "UTC"))), "p1", "2024-01-15")
    assert row["words_sent"] == 11


def test_a_session_across_local_midnight_counts_for_the_day_it_starts():
    # given: São Paulo (UTC-3): 23:50 on 4 March, then 00:10 and 00:20 on 5 March
    msgs = messages(
        [
            ("p1", "c", "user", "2024-03-05 02:50"),
            ("p1", "c", "user", "2024-03-05 03:10"),
            ("p1", "c", "user", "2024-03-05 03:20"),
        ]
    )
    daily = daily_usage(msgs, participants(("p1", "America/Sao_Paulo")))
    before, after = day(daily, "p1", "2024-03-04"), day(daily, "p1", "2024-03-05")
    # then: the 30-minute session belongs to 4 March; messages stay on their own local day
    assert (before["sessions"], before["active_minutes"]) == (1, pytest.approx(30.0))
    assert (after["sessions"], after["active_minutes"]) == (0, 0.0)
    assert math.isnan(after["session_mean_minutes"])
    assert (before["messages_sent"], after["messages_sent"]) == (1, 2)
    assert (before["night_share"], after["night_share"]) == (0.0, 1.0)


def test_night_share_uses_local_time_not_utc():
    # given: 02:00 UTC is 23:00 the previous evening in São Paulo; 07:00 UTC is 04:00 local
    msgs = messages(
        [("p1", "c", "user", "2024-03-05 02:00"), ("p1", "c", "user", "2024-03-05 07:00")]
    )
    daily = daily_usage(msgs, participants(("p1", "America/Sao_Paulo")))
    evening, small_hours = day(daily, "p1", "2024-03-04"), day(daily, "p1", "2024-03-05")
    assert (evening["night_messages"], evening["night_share"]) == (0, 0.0)
    assert (small_hours["night_messages"], small_hours["night_share"]) == (1, 1.0)


def test_dst_fall_back_repeated_hour_keeps_elapsed_time():
    # given: New York, 3 Nov 2024: 01:30 EDT, 01:50 EDT, then clocks go back: 01:05 EST, 01:30 EST
    msgs = messages(
        [
            ("p1", "c", "user", "2024-11-03 05:30"),
            ("p1", "c", "user", "2024-11-03 05:50"),
            ("p1", "c", "user", "2024-11-03 06:05"),
            ("p1", "c", "user", "2024-11-03 06:30"),
        ]
    )
    daily = daily_usage(msgs, participants(("p1", "America/New_York")))
    assert list(daily["date"]) == [pd.Timestamp("2024-11-03")]
    row = daily.iloc[0]
    # then: one session of 60 real minutes (the wall clock only advanced 0 minutes), all night
    assert row["sessions"] == 1
    assert row["active_minutes"] == pytest.approx(60.0)
    assert row["night_messages"] == 4


def test_dst_spring_forward_gap_in_london():
    # given: London, 31 Mar 2024: 00:50 GMT, then 01:10 UTC = 02:10 BST, and 05:30 UTC = 06:30 BST
    msgs = messages(
        [
            ("p1", "c", "user", "2024-03-31 00:50"),
            ("p1", "c", "user", "2024-03-31 01:10"),
            ("p1", "c", "user", "2024-03-31 05:30"),
        ]
    )
    row = day(daily_usage(msgs, participants(("p1", "Europe/London"))), "p1", "2024-03-31")
    # then: 20 real minutes in the first session; 06:30 BST is not night although 05:30 UTC is
    assert row["sessions"] == 2
    assert row["active_minutes"] == pytest.approx(21.0)
    assert row["night_messages"] == 2
    assert row["night_share"] == pytest.approx(2 / 3)


def test_a_timezone_change_applies_from_its_effective_time():
    # given: London until 10 June 12:00 UTC, São Paulo after
    msgs = messages(
        [
            ("p1", "c", "user", "2024-06-10 01:00"),  # 02:00 BST, 10 June: night
            ("p1", "c", "user", "2024-06-11 01:00"),  # 22:00 São Paulo, 10 June: evening
            ("p1", "c", "user", "2024-06-12 12:00"),  # the instant of a second change
        ]
    )
    people = participants(("p1", "Europe/London"))
    changes = pd.DataFrame(
        {
            "participant": ["p1", "p1"],
            "effective_from": pd.to_datetime(["2024-06-10 12:00", "2024-06-12 12:00"], utc=True),
            "timezone": ["America/Sao_Paulo", "Asia/Tokyo"],
        }
    )
    daily = daily_usage(msgs, people, tz_changes=changes)
    row = day(daily, "p1", "2024-06-10")
    assert (row["messages_sent"], row["night_messages"]) == (2, 1)
    # the change is inclusive: 12:00 UTC is 21:00 in Tokyo on 12 June
    assert day(daily, "p1", "2024-06-12")["messages_sent"] == 1
    # without the changes the second message would be 02:00 BST on 11 June
    plain = daily_usage(msgs, people)
    assert day(plain, "p1", "2024-06-11")["night_messages"] == 1


def test_imported_history_is_kept_out_of_daily_features_and_summarised_apart():
    msgs = messages(
        [
            ("p1", "old1", "user", "2024-01-01 10:00", "a b", float("nan"), True),
            ("p1", "old1", "assistant", "2024-01-01 10:01", "x y z", 900.0, True),
            ("p1", "old2", "user", "2024-01-01 11:00", "a b c", float("nan"), True),
            ("p1", "old1", "user", "2024-01-03 09:00", "a", float("nan"), True),
            ("p1", "new", "user", "2024-02-01 10:00", "hi there"),
        ]
    )
    people = participants(("p1", "UTC"), ("p2", "UTC"))
    daily = daily_usage(msgs, people)
    assert list(daily["date"]) == [pd.Timestamp("2024-02-01")]
    assert daily["messages_sent"].tolist() == [1]
    base = imported_baseline(msgs, people).set_index("participant")
    assert list(base.columns) == list(IMPORTED_COLUMNS[1:])
    p1 = base.loc["p1"]
    assert (p1["imported_messages"], p1["imported_words"]) == (3, 6)
    assert (p1["imported_conversations"], p1["imported_days_active"]) == (2, 2)
    assert p1["imported_first_date"] == pd.Timestamp("2024-01-01")
    assert p1["imported_last_date"] == pd.Timestamp("2024-01-03")
    assert p1["imported_messages_per_active_day"] == pytest.approx(1.5)
    p2 = base.loc["p2"]
    assert p2["imported_messages"] == 0 and pd.isna(p2["imported_first_date"])


def test_study_day_counts_from_the_local_enrolment_date():
    # enrolled 23:30 UTC on 1 March = 20:30 in São Paulo, so day 0 is 1 March locally
    msgs = messages([("p1", "c", "user", "2024-03-03 12:00")])
    people = participants(("p1", "America/Sao_Paulo", "pt-br", "2024-03-01 23:30"))
    assert daily_usage(msgs, people)["study_day"].tolist() == [2]


def test_rows_are_ordered_by_participant_and_date_whatever_the_input_order():
    msgs = messages(
        [
            ("p2", "c", "user", "2024-01-02 10:00"),
            ("p1", "c", "user", "2024-01-03 10:00"),
            ("p1", "c", "user", "2024-01-01 10:00"),
            ("p1", "c", "user", "2024-01-01 10:10"),
        ]
    ).iloc[[3, 0, 1, 2]]
    daily = daily_usage(msgs, participants(("p1", "UTC"), ("p2", "UTC")))
    assert list(
        zip(daily["participant"], daily["date"].dt.day, daily["sessions"], strict=True)
    ) == [
        ("p1", 1, 1),
        ("p1", 3, 1),
        ("p2", 2, 1),
    ]
    assert day(daily, "p1", "2024-01-01")["active_minutes"] == pytest.approx(10.0)


def test_microsecond_timestamps_are_accepted():
    msgs = messages([("p1", "c", "user", "2024-01-01 10:00")])
    msgs["created_at"] = msgs["created_at"].astype("datetime64[us, UTC]")
    assert daily_usage(msgs, participants(("p1", "UTC")))["messages_sent"].tolist() == [1]


def test_no_messages_give_empty_frames_with_the_right_columns():
    people = participants(("p1", "UTC"))
    assert list(daily_usage(empty_messages(), people).columns) == list(DAILY_USAGE_COLUMNS)
    assert daily_usage(empty_messages(), people).empty
    full = daily_features(empty_messages(), people)
    assert full.empty and list(full.columns) == list(DAILY_COLUMNS)
    base = imported_baseline(empty_messages(), people)
    assert base["imported_messages"].tolist() == [0]


def test_naive_timestamps_and_unknown_participants_are_rejected():
    msgs = messages([("p1", "c", "user", "2024-01-01 10:00")])
    with pytest.raises(ValueError, match="not in the participants frame"):
        daily_usage(msgs, participants(("p2", "UTC")))
    msgs["created_at"] = msgs["created_at"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="timezone-aware"):
        daily_usage(msgs, participants(("p1", "UTC")))
    with pytest.raises(ValueError, match="unknown time zone"):
        daily_usage(
            messages([("p1", "c", "user", "2024-01-01 10:00")]),
            participants(("p1", "Mars/Olympus")),
        )
