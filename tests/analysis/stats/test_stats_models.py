"""Study-level helpers: arm x time model, within/between split, dose-response bins."""

import numpy as np
import pandas as pd
import pytest

from analysis.stats.models import arm_time_model, dose_response, within_between


@pytest.fixture(scope="module")
def trial() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n, waves = 120, 8
    pid = np.repeat(np.arange(n), waves)
    week = np.tile(np.arange(waves, dtype=float), n)
    arm = np.where(np.arange(n) % 2 == 0, "control", "chatbot")[pid]
    slope_gain = np.where(arm == "chatbot", 0.5, 0.0)  # the chatbot arm improves faster
    b0 = rng.normal(0, 2.0, n)[pid]
    b1 = rng.normal(0, 0.3, n)[pid]
    usage = rng.gamma(2.0, 1.0, n)[pid] + rng.normal(0, 0.5, pid.size)
    y = 10 + 0.2 * week + slope_gain * week + b0 + b1 * week + rng.normal(0, 1, pid.size)
    return pd.DataFrame({"pid": pid, "week": week, "arm": arm, "usage": usage, "wellbeing": y})


def test_it_estimates_the_difference_in_slopes_between_arms(trial):
    result = arm_time_model(trial, outcome="wellbeing", time="week", arm="arm", groups="pid")
    # "chatbot" sorts before "control", so control is the non-reference arm here
    interaction = result.fixed["week:C(arm)[T.control]"]
    assert interaction.estimate == pytest.approx(-0.5, abs=0.15)
    assert interaction.p < 0.001
    assert result.random_names == ["Intercept", "week"]
    assert result.converged


def test_it_fits_the_random_intercept_variant(trial):
    result = arm_time_model(
        trial, outcome="wellbeing", time="week", arm="arm", groups="pid", random_slope=False
    )
    assert result.random_names == ["Intercept"]
    assert set(result.fixed) == {"Intercept", "C(arm)[T.control]", "week", "week:C(arm)[T.control]"}


def test_it_splits_a_predictor_into_person_mean_and_deviation():
    data = pd.DataFrame({"pid": [1, 1, 1, 2, 2], "usage": [1.0, 2.0, np.nan, 4.0, 8.0]})
    out = within_between(data, "usage", "pid")
    np.testing.assert_allclose(out["usage_between"], [1.5, 1.5, 1.5, 6.0, 6.0])
    np.testing.assert_allclose(out["usage_within"], [-0.5, 0.5, np.nan, -2.0, 2.0])
    assert "usage_within" not in data.columns  # input left untouched


def test_it_summarises_outcome_by_usage_quartile():
    usage = np.arange(1.0, 101.0)
    data = pd.DataFrame({"usage": usage, "y": usage / 10})
    bins = dose_response(data, outcome="y", usage="usage", bins=4)
    assert [b.n for b in bins] == [25, 25, 25, 25]
    first = bins[0]
    assert (first.usage_low, first.usage_high) == (1.0, 25.0)
    assert first.mean == pytest.approx(1.3)
    # t(24) 97.5% quantile 2.0639; sd of 0.1..2.5 step 0.1 is 0.7360
    half = 2.063898562 * np.std(usage[:25] / 10, ddof=1) / 5
    assert (first.ci_low, first.ci_high) == pytest.approx((1.3 - half, 1.3 + half))


def test_it_counts_each_participant_once_when_given_groups(trial):
    bins = dose_response(trial, outcome="wellbeing", usage="usage", bins=3, groups="pid")
    assert sum(b.n for b in bins) == 120


def test_it_names_a_missing_column():
    with pytest.raises(ValueError, match="unknown column 'minutes'"):
        dose_response(pd.DataFrame({"y": [1.0]}), outcome="y", usage="minutes")
