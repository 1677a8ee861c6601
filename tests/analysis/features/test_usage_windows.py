"""Window aggregation of daily features: [start, end) edges, per-day means, survey windows."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers_features import messages, participants

from analysis.features import (
    WINDOW_COLUMNS,
    daily_features,
    daily_usage,
    participant_summary,
    window_features,
    windows_before,
)


def _daily() -> pd.DataFrame:
    # p1 active on 1 Jan (2 messages), 3 Jan (1 message, at 02:00: night) and 8 Jan (4 messages)
    rows = [
        ("p1", "c", "user", "2024-01-01 10:00"),
        ("p1", "c", "user", "2024-01-01 10:10"),
        ("p1", "c", "user", "2024-01-03 02:00"),
    ] + [("p1", "d", "user", f"2024-01-08 1{i}:00") for i in range(4)]
    return daily_usage(messages(rows), participants(("p1", "UTC"), ("p2", "UTC")))


def _windows(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "participant": [r[0] for r in rows],
            "start": pd.to_datetime([r[1] for r in rows]),
            "end": pd.to_datetime([r[2] for r in rows]),
            "wave": list(range(len(rows))),
        }
    )


def test_window_start_is_inclusive_and_end_exclusive():
    out = window_features(
        _daily(),
        _windows(
            ("p1", "2024-01-01", "2024-01-08"),  # 1 and 3 Jan, not 8 Jan
            ("p1", "2024-01-03", "2024-01-09"),  # 3 and 8 Jan
            ("p1", "2024-01-02", "2024-01-03"),  # nothing
            ("p1", "2024-01-08", "2024-01-08"),  # empty window
        ),
    )
    assert out["messages_sent"].tolist() == [3, 5, 0, 0]
    assert out["days_active"].tolist() == [2, 2, 0, 0]
    assert out["window_days"].tolist() == [7, 6, 1, 0]
    assert out["wave"].tolist() == [0, 1, 2, 3]  # caller's columns are kept, in order


def test_window_means_shares_and_ratios_are_recomputed_from_sums():
    out = window_features(_daily(), _windows(("p1", "2024-01-01", "2024-01-08"))).iloc[0]
    assert out["share_days_active"] == pytest.approx(2 / 7)
    assert out["messages_per_day"] == pytest.approx(3 / 7)
    assert out["messages_per_active_day"] == pytest.approx(1.5)
    assert out["sessions"] == 2
    assert out["active_minutes"] == pytest.approx(11.0)  # 10 + 1
    assert out["mean_session_minutes"] == pytest.approx(5.5)
    assert out["night_share"] == pytest.approx(1 / 3)
    assert set(WINDOW_COLUMNS) <= set(out.index)


def test_a_participant_without_activity_gets_zero_counts_and_nan_ratios():
    out = window_features(_daily(), _windows(("p2", "2024-01-01", "2024-01-08"))).iloc[0]
    assert (out["messages_sent"], out["days_active"], out["share_days_active"]) == (0, 0, 0.0)
    assert pd.isna(out["night_share"]) and pd.isna(out["mean_session_minutes"])


def test_windows_include_text_marker_rates_when_present():
    msgs = messages(
        [
            ("p1", "c", "user", "2024-01-01 10:00", "I am happy"),
            ("p1", "c", "user", "2024-01-02 10:00", "sad"),
            ("p1", "c", "user", "2024-01-05 10:00", "I love you"),
        ]
    )
    daily = daily_features(msgs, participants(("p1", "UTC")))
    out = window_features(daily, _windows(("p1", "2024-01-01", "2024-01-05"))).iloc[0]
    assert out["tokens"] == 4
    assert out["first_person_rate"] == pytest.approx(1 / 4)
    assert out["negative_affect_rate"] == pytest.approx(1 / 4)
    assert out["relationship_phrases"] == 0


def test_windows_before_a_survey_end_on_its_local_date():
    # given: a survey completed at 02:00 UTC on 8 Jan = 23:00 on 7 Jan in São Paulo
    events = pd.DataFrame(
        {"participant": ["p1"], "at": pd.to_datetime(["2024-01-08 02:00"], utc=True)}
    )
    people = participants(("p1", "America/Sao_Paulo"))
    out = windows_before(events, people, days=7)
    assert out["start"].tolist() == [pd.Timestamp("2023-12-31")]
    assert out["end"].tolist() == [pd.Timestamp("2024-01-07")]


def test_window_dates_must_be_local_calendar_dates():
    windows = _windows(("p1", "2024-01-01", "2024-01-08"))
    windows["start"] = windows["start"].dt.tz_localize("UTC")
    with pytest.raises(ValueError, match="local calendar dates"):
        window_features(_daily(), windows)


def test_empty_windows_give_an_empty_frame_with_the_window_columns():
    out = window_features(_daily(), _windows())
    assert out.empty
    assert set(WINDOW_COLUMNS) <= set(out.columns)


def test_participant_summary_counts_active_days():
    summary = participant_summary(_daily()).set_index("participant")
    assert summary.loc["p1", "days_active"] == 3
    assert summary.loc["p1", "messages_per_active_day"] == pytest.approx(7 / 3)
    assert summary.loc["p1", "last_active_date"] == pd.Timestamp("2024-01-08")
