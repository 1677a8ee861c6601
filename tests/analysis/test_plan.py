"""Running the analysis plan on simulated linked tables (no database)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analysis.plan import run_plan

PLAN = {
    "outcomes": ["who5.percentage"],
    "predictors": ["messages_sent"],
    "covariates": [],
    "random_effects": "~ wave",
    "arm_by_time": True,
}


def simulate(effect: float, *, seed: int, n: int = 60, waves: int = 6) -> pd.DataFrame:
    """y = 50 + person intercept + 1.5·wave·[current arm] + effect·(usage − person mean) + noise."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), waves)
    wave = np.tile(np.arange(waves), n).astype(float)
    arm = np.where(np.arange(n) % 2 == 0, "legacy", "current")[pid]
    rate = rng.gamma(4.0, 5.0, size=n)[pid]
    usage = rng.poisson(rate).astype(float)
    frame = pd.DataFrame({"participant": [f"p{i}" for i in pid], "arm": arm, "wave": wave})
    frame["messages_sent"] = usage
    mean = frame.groupby("participant")["messages_sent"].transform("mean")
    frame["messages_sent_between"] = mean
    frame["messages_sent_within"] = usage - mean
    y = (
        50
        + rng.normal(0, 10, size=n)[pid]
        + 1.5 * wave * (arm == "current")
        + effect * frame["messages_sent_within"]
        + rng.normal(0, 6, size=len(frame))
    )
    frame["who5.percentage"] = y
    return frame


def test_it_recovers_a_planted_within_person_effect():
    # given: a within-person effect of 0.8 points per extra message
    linked = simulate(0.8, seed=0)
    # when
    results = run_plan(linked, PLAN)
    # then: the estimate's 95% CI covers the truth and excludes zero
    model = results["outcomes"]["who5.percentage"]["usage_model"]
    term = model["fixed"]["messages_sent_within"]
    assert term["ci_low"] <= 0.8 <= term["ci_high"]
    assert term["p"] < 0.05
    assert model["n_groups"] == 60 and model["n_obs"] == 360
    assert results["primary"]["q"]["who5.percentage"] is not None
    arm_model = results["outcomes"]["who5.percentage"]["arm_time_model"]
    assert "wave:C(arm)[T.legacy]" in arm_model["fixed"]
    # and everything is plain JSON
    json.dumps(results, allow_nan=False)


def test_a_null_effect_is_rarely_significant():
    # given five cohorts without a within-person effect
    significant = 0
    for seed in range(5):
        results = run_plan(simulate(0.0, seed=100 + seed), PLAN)
        p = results["outcomes"]["who5.percentage"]["usage_model"]["fixed"]["messages_sent_within"]
        significant += p["p"] < 0.05
    # then
    assert significant <= 1


def test_bh_runs_across_outcomes_and_dose_response_has_bins():
    linked = simulate(0.8, seed=2)
    linked["ucla3.total"] = 6 + np.random.default_rng(3).normal(0, 1, len(linked))
    plan = {
        **PLAN,
        "outcomes": ["who5.percentage", "ucla3.total"],
        "multiplicity": {"correction": "benjamini-hochberg"},
    }
    results = run_plan(linked, plan)
    p = results["primary"]["p"]
    q = results["primary"]["q"]
    # BH with two tests: the larger p is unchanged, the smaller doubled (capped by the larger)
    small, large = sorted(p, key=p.get)
    assert q[large] == p[large]
    assert q[small] == min(2 * p[small], p[large])
    bins = results["outcomes"]["who5.percentage"]["dose_response"]["bins"]
    assert len(bins) == 4 and sum(b["n"] for b in bins) == 60


def test_a_model_with_too_few_participants_is_reported_not_raised():
    linked = simulate(0.8, seed=4, n=3)
    results = run_plan(linked, PLAN)
    model = results["outcomes"]["who5.percentage"]["usage_model"]
    assert model["error"] == "too few participants with complete data (3 < 5)"


def test_a_missing_outcome_column_is_reported():
    results = run_plan(simulate(0.0, seed=5), {**PLAN, "outcomes": ["phq9.total"]})
    assert results["outcomes"]["phq9.total"]["usage_model"]["error"] == "no column 'phq9.total'"
    assert results["primary"]["q"]["phq9.total"] is None
