"""Classifier rates as usage features (analysis/features/classifiers.py): daily counts on local
days, window rates from summed counts, the same windows and missing-before-enrolment rule as the
other usage columns, and within/between centring when chosen as a predictor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.features import daily_usage
from analysis.features.classifiers import (
    add_classifier_days,
    classifier_daily_counts,
    classifier_features,
)
from analysis.linking import link_usage_to_outcomes
from tests.analysis.test_linking import PARTICIPANTS, T, messages, responses


def labels(rows: list[tuple[str, str, str, bool]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "participant": [r[0] for r in rows],
            "at": [T(r[1]) for r in rows],
            "feature": [r[2] for r in rows],
            "hit": [r[3] for r in rows],
        }
    )


def test_counts_fall_on_the_participants_local_day():
    # participant c is in Sao Paulo (UTC-3): 01:00 UTC on the 3rd is still the 2nd there
    counts = classifier_daily_counts(
        labels(
            [
                ("c", "2025-01-03 01:00", "cls_loneliness", True),
                ("c", "2025-01-03 12:00", "cls_loneliness", False),
                ("a", "2025-01-03 01:00", "cls_loneliness", True),
            ]
        ),
        PARTICIPANTS,
    )
    by = {(r.participant, str(r.date.date())): r for r in counts.itertuples()}
    assert by[("c", "2025-01-02")].cls_loneliness_hits == 1
    assert by[("c", "2025-01-02")].cls_loneliness_n == 1
    assert by[("c", "2025-01-03")].cls_loneliness_hits == 0
    assert by[("a", "2025-01-03")].cls_loneliness_n == 1
    assert classifier_features(counts.columns) == ["cls_loneliness"]


def test_window_rates_come_from_summed_counts_and_are_missing_without_labels():
    # given: a's messages on days 2-5 of the study; three labelled, two with the feature;
    # b has messages but no labels
    msgs = messages(
        [
            ("a", "2025-01-02 09:00"),
            ("a", "2025-01-03 09:00"),
            ("a", "2025-01-04 09:00"),
            ("a", "2025-01-05 09:00"),
            ("b", "2025-01-03 09:00"),
        ]
    )
    daily = daily_usage(msgs, PARTICIPANTS)
    found = labels(
        [
            ("a", "2025-01-02 09:00", "cls_loneliness", True),
            ("a", "2025-01-03 09:00", "cls_loneliness", True),
            ("a", "2025-01-04 09:00", "cls_loneliness", False),
            # after the survey's day: not in its window
            ("a", "2025-01-09 09:00", "cls_loneliness", True),
        ]
    )
    daily = add_classifier_days(daily, classifier_daily_counts(found, PARTICIPANTS))
    # when: surveys on day 8, with a 7-day window (Jan 1-7; a 14-day one starts before enrolment)
    linked = link_usage_to_outcomes(
        daily,
        PARTICIPANTS,
        responses(
            [
                ("a", "w1", 1, "2025-01-08 12:00", 60.0),
                ("b", "w1", 1, "2025-01-08 12:00", 50.0),
            ]
        ),
        window_days=7,
        predictors=["cls_loneliness_rate"],
    )
    # then
    rates = dict(zip(linked["participant"], linked["cls_loneliness_rate"], strict=True))
    assert rates["a"] == pytest.approx(2 / 3)
    assert np.isnan(rates["b"])  # no labels: missing, not 0
    assert "cls_loneliness_rate_within" in linked.columns
    assert linked.loc[linked["participant"] == "a", "cls_loneliness_rate_between"].iloc[
        0
    ] == pytest.approx(2 / 3)
    # and a window reaching back before enrolment is missing, like every usage column
    early = link_usage_to_outcomes(
        daily,
        PARTICIPANTS,
        responses([("a", "w1", 1, "2025-01-08 12:00", 60.0)]),
        window_days=14,
    )
    assert np.isnan(early["cls_loneliness_rate"].iloc[0])


def test_a_labels_frame_without_required_columns_is_refused():
    with pytest.raises(ValueError, match="missing columns \\['hit'\\]"):
        classifier_daily_counts(labels([]).drop(columns=["hit"]), PARTICIPANTS)
