"""The vectorised daily usage agrees with a plain per-message reference loop."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from helpers_features import participants
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.features import daily_text_markers, daily_usage

ZONES = {"p1": "America/Sao_Paulo", "p2": "Europe/London", "p3": "America/New_York"}
# Around the London spring-forward and New York fall-back days and a few ordinary days.
BASES = [datetime(2024, 3, 30, 20, tzinfo=UTC), datetime(2024, 11, 2, 20, tzinfo=UTC)]

message_st = st.tuples(
    st.sampled_from(sorted(ZONES)),
    st.sampled_from(["user", "assistant"]),
    st.integers(min_value=0, max_value=3 * 24 * 60),  # minutes after the base
    st.integers(min_value=0, max_value=59),  # seconds
)


def _reference(rows, gap_minutes=30, min_minutes=1.0):
    """Sessions and counts per (participant, local date), one message at a time."""
    out = defaultdict(lambda: {"messages_sent": 0, "night": 0, "sessions": 0, "minutes": 0.0})
    by_p = defaultdict(list)
    for p, role, at in rows:
        by_p[p].append((at, role))
        local = at.astimezone(ZoneInfo(ZONES[p]))
        if role == "user":
            out[(p, local.date())]["messages_sent"] += 1
            out[(p, local.date())]["night"] += local.hour < 6
        else:
            out[(p, local.date())]  # the day exists
    for p, items in by_p.items():
        items.sort(key=lambda x: x[0])
        first = last = items[0][0]
        for at, _ in [*items[1:], (None, None)]:
            if at is None or at - last > timedelta(minutes=gap_minutes):
                day = out[(p, first.astimezone(ZoneInfo(ZONES[p])).date())]
                day["sessions"] += 1
                day["minutes"] += max((last - first).total_seconds() / 60, min_minutes)
                first = at
            last = at
    return out


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(BASES), st.lists(message_st, min_size=1, max_size=40))
def test_daily_usage_matches_a_per_message_reference(base, drawn):
    # given: random messages in three zones across a DST change, in random order
    rows = [(p, role, base + timedelta(minutes=m, seconds=s)) for p, role, m, s in drawn]
    msgs = pd.DataFrame(
        {
            "participant": [r[0] for r in rows],
            "conversation": "c",
            "role": [r[1] for r in rows],
            "created_at": pd.to_datetime([r[2] for r in rows], utc=True),
            "text": "x",
            "latency_ms": float("nan"),
            "imported": False,
        }
    )
    people = participants(*ZONES.items())
    # when
    daily = daily_usage(msgs, people)
    # then
    expected = _reference(rows)
    got = {
        (r.participant, r.date.date()): (r.messages_sent, r.night_messages, r.sessions)
        for r in daily.itertuples()
    }
    assert got == {k: (v["messages_sent"], v["night"], v["sessions"]) for k, v in expected.items()}
    for r in daily.itertuples():
        minutes = expected[(r.participant, r.date.date())]["minutes"]
        assert r.active_minutes == pytest.approx(minutes)


def test_daily_text_markers_have_the_same_rows_as_daily_usage():
    msgs = pd.DataFrame(
        {
            "participant": ["p1", "p1", "p2"],
            "conversation": "c",
            "role": ["user", "assistant", "user"],
            "created_at": pd.to_datetime(
                ["2024-01-01 10:00", "2024-01-02 10:00", "2024-01-01 12:00"], utc=True
            ),
            "text": ["I am sad", "I am glad", "eu"],
            "latency_ms": float("nan"),
            "imported": False,
        }
    )
    people = participants(("p1", "UTC", "en"), ("p2", "UTC", "pt-br"))
    text = daily_text_markers(msgs, people)
    usage = daily_usage(msgs, people)
    assert text[["participant", "date"]].equals(usage[["participant", "date"]])
    assert text["first_person"].tolist() == [1, 0, 1]
    assert text["negative_affect_rate"].tolist()[0] == pytest.approx(1 / 3)
    assert pd.isna(text["first_person_rate"].iloc[1])
