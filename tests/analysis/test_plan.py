"""Running the analysis plan on simulated linked tables (no database)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import sqrtm

from analysis.plan import cluster_robust, model_frame, run_plan
from analysis.stats.mixedlm import fit_mixedlm
from analysis.stats.robust import mixed_cluster_robust

PLAN = {
    "outcomes": ["who5.percentage"],
    "predictors": ["messages_sent"],
    "covariates": [],
    "random_effects": "~ wave",
    "arm_by_time": True,
}
PRIMARY = "messages_sent_lag_within"


def with_lags(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``<c>_lag`` from the previous occasion, as the linking step adds them (complete panels)."""
    frame = frame.sort_values(["participant", "occasion"]).reset_index(drop=True)
    for column in columns:
        frame[f"{column}_lag"] = frame.groupby("participant")[column].shift(1)
    return frame


def simulate(
    effect: float, *, seed: int, n: int = 60, waves: int = 6, slope_sd: float = 0.0
) -> pd.DataFrame:
    """A linked table with a planted lagged within-person effect on the log1p usage scale.

    y(t) = 50 + person intercept + 1.5·wave·[current arm]
           + effect·(log1p(usage(t−1)) − person mean) + noise;
    baseline usage (wave 0) is missing, as a window before enrolment is.
    """
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), waves)
    wave = np.tile(np.arange(waves), n).astype(float)
    arm = np.where(np.arange(n) % 2 == 0, "legacy", "current")[pid]
    rate = rng.gamma(4.0, 5.0, size=n)[pid] * np.exp(rng.normal(0, 0.5, pid.size))
    usage = rng.poisson(rate).astype(float)
    usage[wave == 0] = np.nan
    frame = pd.DataFrame(
        {
            "participant": [f"p{i}" for i in pid],
            "arm": arm,
            "wave": wave,
            "occasion": wave,
            "weeks": wave + rng.exponential(0.1, pid.size),
            "messages_sent": usage,
            "window_before_enrollment": wave == 0,
        }
    )
    frame = with_lags(frame, ["messages_sent", "window_before_enrollment"])
    lagged = np.log1p(frame["messages_sent_lag"])
    centred = lagged - lagged.groupby(frame["participant"]).transform("mean")
    slopes = effect + rng.normal(0, slope_sd, n)
    person = frame["participant"].str[1:].astype(int).to_numpy()
    frame["who5.percentage"] = (
        50
        + rng.normal(0, 10, size=n)[person]
        + 1.5 * frame["wave"] * (frame["arm"] == "current")
        + slopes[person] * centred.fillna(0)
        + rng.normal(0, 4, size=len(frame))
    )
    return with_lags(frame, ["who5.percentage"]).assign(
        messages_sent_lag=frame["messages_sent_lag"]
    )


def test_the_primary_model_is_the_lagged_within_person_model():
    # when
    results = run_plan(simulate(0.0, seed=1), PLAN)
    # then: the primary term lives in the lagged model, which adjusts for the previous outcome
    primary = results["primary"]
    assert primary["model"] == "lagged_model"
    assert primary["term"] == PRIMARY
    assert {"p", "q", "method", "p_method"} <= set(primary)
    entry = results["outcomes"]["who5.percentage"]
    lagged = entry["lagged_model"]
    assert lagged["role"] == "primary" and lagged["estimand"] == "lagged within-person effect"
    # by default it models the change since the previous survey
    assert lagged["lagged_outcome"] == "change"
    assert lagged["formula"].startswith("who5.percentage_change ~ messages_sent_lag_within + ")
    # and its tests are cluster-robust, the model-based ones kept beside them
    assert lagged["p_method"] == "cluster-robust t (CR2, Bell-McCaffrey df)"
    # with Bell-McCaffrey df: at most participants - 1, fewer when a few people dominate
    assert 5 < lagged["fixed"][PRIMARY]["df"] < 60 - 1
    assert lagged["fixed_model"][PRIMARY]["estimate"] == lagged["fixed"][PRIMARY]["estimate"]
    assert "C(wave)[T.5.0]" in lagged["fixed"]
    # and the same-period model is kept, labelled as an association
    association = entry["association_model"]
    assert association["role"] == "secondary"
    assert "association" in association["label"] and "association" in association["estimand"]
    # and its label says which estimand survives mood driving use
    assert "only the lagged model's estimate survives" in association["label"]
    assert "messages_sent_within" in association["fixed"]
    assert "usage_model" not in entry
    json.dumps(results, allow_nan=False)
    # and with lagged_outcome: adjust the previous outcome is a covariate, split like usage
    adjusted = run_plan(simulate(0.0, seed=1), {**PLAN, "lagged_outcome": "adjust"})
    lagged = adjusted["outcomes"]["who5.percentage"]["lagged_model"]
    assert lagged["formula"].startswith("who5.percentage ~ messages_sent_lag_within + ")
    assert "who5.percentage_lag_within" in lagged["fixed"]
    assert "who5.percentage_lag_between" in lagged["fixed"]
    with pytest.raises(ValueError, match=r"analysis\.lagged_outcome must be one of"):
        run_plan(simulate(0.0, seed=1), {**PLAN, "lagged_outcome": "both"})


def test_it_recovers_a_planted_lagged_within_person_effect():
    # given: 6 points per log-unit of last period's use, above one's own average
    linked = simulate(6.0, seed=0)
    # when
    results = run_plan(linked, PLAN)
    # then: the estimate's 95% CI covers the truth and excludes zero
    model = results["outcomes"]["who5.percentage"]["lagged_model"]
    term = model["fixed"][PRIMARY]
    assert term["ci_low"] <= 6.0 <= term["ci_high"]
    assert term["p"] < 0.05
    # waves 0 (no lag) and 1 (lag = the baseline window, before enrolment) never enter
    assert model["n_groups"] == 60 and model["n_obs"] == 60 * 4
    assert model["excluded"] == {
        "previous occasion not answered": 60,
        "usage window before enrolment": 60,
    }
    assert results["primary"]["q"]["who5.percentage"] is not None
    arm_model = results["outcomes"]["who5.percentage"]["arm_time_model"]
    assert "wave:C(arm)[T.legacy]" in arm_model["fixed"]
    json.dumps(results, allow_nan=False)


def lagged_effect_panel(effect: float, *, seed: int, n: int = 300, waves: int = 6) -> pd.DataFrame:
    """A linked table whose outcome at t carries ``effect`` × raw usage before t − 1 and nothing
    else that moves within a person (noise SD 0.5): the estimand exactly as the validity benchmark's
    generator plants it. Usage is drawn independently per occasion; baseline usage is missing
    (its window precedes enrolment), so y at the first follow-up carries no usage effect."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), waves)
    wave = np.tile(np.arange(waves), n).astype(float)
    rate = rng.gamma(4.0, 7.0, size=n)
    usage = rng.poisson(rate[pid]).astype(float)
    usage[wave == 0] = np.nan
    frame = pd.DataFrame(
        {
            "participant": [f"p{i}" for i in pid],
            "wave": wave,
            "occasion": wave,
            "weeks": wave,
            "messages_sent": usage,
            "window_before_enrollment": wave == 0,
        }
    )
    frame = with_lags(frame, ["messages_sent", "window_before_enrollment"])
    person = frame["participant"].str[1:].astype(int).to_numpy()  # with_lags sorted the rows
    frame["who5.percentage"] = (
        50
        + rng.normal(0, 10, size=n)[person]
        # relative to the person's usual use, as analysis.simulate.wellbeing plants it
        + effect * (frame["messages_sent_lag"] - rate[person]).fillna(0)
        + rng.normal(0, 0.5, size=len(frame))
    )
    return with_lags(frame, ["who5.percentage"]).assign(
        messages_sent_lag=frame["messages_sent_lag"]
    )


def test_the_change_model_can_adjust_for_the_usage_that_acted_on_the_previous_outcome():
    # given: y(t) moves 0.5 per message sent before t - 1, so y(t - 1) carries the usage before
    # t - 2 and the change y(t) - y(t - 1) carries minus that
    linked = lagged_effect_panel(0.5, seed=3)
    plan = {"outcomes": ["who5.percentage"], "predictors": ["messages_sent"]}
    plan["usage_transform"] = "none"

    def lagged(extra: dict) -> dict:
        results = run_plan(linked, {**plan, **extra}, usage_models_only=True)
        return results["outcomes"]["who5.percentage"]["lagged_model"]

    # when the plan asks for the adjustment
    model = lagged({"previous_usage": "adjust"})
    # then the usage before t - 2 is in the model and the lagged effect is recovered
    assert "messages_sent_lag2_within" in model["fixed"]
    assert model["previous_usage"].startswith("adjusted for usage before occasion t - 2")
    # (what is left, +2-5% on these panels, comes from the second follow-up's previous outcome,
    # whose pre-enrolment usage is unobserved and enters at the person's mean: docs/analysis.md)
    assert model["fixed"][PRIMARY]["estimate"] == pytest.approx(0.5, abs=0.04)
    # and by default (robust to mood-driven use) it is not, and the effect is overstated, as
    # docs/analysis.md says: person-mean centring loads minus its effect onto the lagged usage
    default = lagged({})
    assert "messages_sent_lag2_within" not in default["fixed"]
    assert default["previous_usage"] == "not adjusted (previous_usage: ignore, the default)"
    assert default["fixed"][PRIMARY]["estimate"] > 0.58
    # and with lagged_outcome: adjust nothing is added (the previous outcome is a covariate)
    adjusted = lagged({"previous_usage": "adjust", "lagged_outcome": "adjust"})
    assert "messages_sent_lag2_within" not in adjusted["fixed"]
    with pytest.raises(ValueError, match=r"analysis\.previous_usage must be one of ignore, adjust"):
        run_plan(linked, {**plan, "previous_usage": "yes"})


def test_a_null_effect_is_rarely_significant():
    # given five cohorts without a within-person effect
    significant = 0
    for seed in range(5):
        results = run_plan(simulate(0.0, seed=100 + seed), PLAN)
        p = results["outcomes"]["who5.percentage"]["lagged_model"]["fixed"][PRIMARY]
        significant += p["p"] < 0.05
    # then
    assert significant <= 1


def test_person_means_are_taken_over_the_rows_the_model_uses():
    # given: p0's wave-3 outcome is missing, so the lagged model drops that row (and wave 4,
    # whose previous outcome it was)
    linked = simulate(0.0, seed=7, n=8)
    drop = (linked["participant"] == "p0") & (linked["wave"] == 3)
    linked.loc[drop, "who5.percentage"] = np.nan
    linked = with_lags(linked.drop(columns="who5.percentage_lag"), ["who5.percentage"])
    # when
    adjust = {**PLAN, "lagged_outcome": "adjust"}
    frame, formula, info = model_frame(linked, "who5.percentage", adjust, lagged=True)
    # then: p0's between part is the mean over exactly its modelled rows (waves 2 and 5)
    p0 = frame[frame["participant"] == "p0"]
    assert p0["wave"].tolist() == [2.0, 5.0]
    used = np.log1p(linked.loc[linked["participant"] == "p0", "messages_sent_lag"]).iloc[[2, 5]]
    assert p0["messages_sent_lag_between"].tolist() == pytest.approx([used.mean()] * 2)
    assert p0["messages_sent_lag_within"].sum() == pytest.approx(0.0)
    # and the lagged outcome is centred on the same rows
    assert p0["who5.percentage_lag_within"].sum() == pytest.approx(0.0, abs=1e-9)
    assert "over the 30 rows of this model" in info["centring"]
    assert formula.startswith("who5.percentage ~ messages_sent_lag_within + ")


def test_the_time_model_is_a_plan_option():
    linked = simulate(0.0, seed=8, n=20)
    categorical = model_frame(linked, "who5.percentage", PLAN, lagged=False)[1]
    assert categorical.endswith("+ C(wave)")
    # linear time is weeks since enrolment at completion, not the scheduled wave
    frame, linear, _ = model_frame(
        linked, "who5.percentage", {**PLAN, "time": "linear"}, lagged=False
    )
    assert linear.endswith("+ weeks") and "wave" not in linear
    frame, spline, info = model_frame(
        linked, "who5.percentage", {**PLAN, "time": "spline"}, lagged=False
    )
    assert spline.endswith("+ weeks + weeks_rcs1")
    k1, k2, k3 = info["spline_knots"]
    assert k1 < k2 < k3
    # the spline column is zero up to the first knot and positive beyond it
    assert (frame.loc[frame["weeks"] <= k1, "weeks_rcs1"] == 0).all()
    assert (frame.loc[frame["weeks"] > k1, "weeks_rcs1"] > 0).all()
    results = run_plan(linked, {**PLAN, "time": "spline"})
    assert "weeks_rcs1" in results["outcomes"]["who5.percentage"]["lagged_model"]["fixed"]
    with pytest.raises(ValueError, match=r"analysis\.time must be one of"):
        run_plan(linked, {**PLAN, "time": "quadratic"})


def test_usage_is_transformed_before_it_is_centred():
    linked = simulate(0.0, seed=9, n=10)
    raw = linked["messages_sent"]
    modelled = linked["who5.percentage"].notna() & raw.notna()
    logged, _, info = model_frame(linked, "who5.percentage", PLAN, lagged=False)
    assert info["usage_transform"] == "log1p"
    assert logged["messages_sent"].tolist() == pytest.approx(np.log1p(raw[modelled]).tolist())
    ranked, _, _ = model_frame(
        linked, "who5.percentage", {**PLAN, "usage_transform": "rank"}, lagged=False
    )
    assert ranked["messages_sent"].between(0, 1, inclusive="right").all()
    assert ranked["messages_sent"].rank().tolist() == raw[modelled].rank().tolist()
    untouched, _, _ = model_frame(
        linked, "who5.percentage", {**PLAN, "usage_transform": "none"}, lagged=False
    )
    assert untouched["messages_sent"].tolist() == raw[modelled].tolist()
    with pytest.raises(ValueError, match=r"analysis\.usage_transform must be one of"):
        model_frame(linked, "who5.percentage", {**PLAN, "usage_transform": "sqrt"}, lagged=False)


def test_a_random_slope_on_usage_is_fitted_when_the_data_identify_it():
    # given: people differ in their lagged effect (SD 4 around 6), 10 occasions each
    linked = simulate(6.0, seed=10, n=80, waves=10, slope_sd=4.0)
    # when
    model = run_plan(linked, {**PLAN, "random_effects": "~1"})["outcomes"]["who5.percentage"][
        "lagged_model"
    ]
    # then: the slope is kept (the person mean of the previous outcome leaves no intercept
    # variance, so the intercept is what goes, and the model says so)
    assert model["re_formula"] == f"~ 0 + {PRIMARY}"
    assert model["refit_from"] == f"~ 1 + {PRIMARY}"
    assert model["random_slope"] == {"term": PRIMARY, "used": True, "reason": None}
    assert 2.0 < model["variance_components"]["random_sd"][PRIMARY] < 6.0
    assert not model["singular"]
    assert model["fixed"][PRIMARY]["ci_low"] <= 6.0 <= model["fixed"][PRIMARY]["ci_high"]


def test_the_random_slope_falls_back_with_the_reason_when_not_identifiable():
    # given: 4 occasions, so the lagged model has 2 rows per person: 2 random effects each
    linked = simulate(0.0, seed=11, n=30, waves=4)
    # when
    model = run_plan(linked, {**PLAN, "random_effects": "~1"})["outcomes"]["who5.percentage"][
        "lagged_model"
    ]
    # then: intercept + slope is refused as lme4 refuses it, said so, and the next structure
    # (the slope alone, one random effect per person) is what we report
    (refused,) = model["not_fitted"]
    assert refused["re_formula"] == f"~ 1 + {PRIMARY}"
    assert "check.nobs.vs.nRE" in refused["reason"]
    assert model["fallback_from"] == f"~ 1 + {PRIMARY}"
    assert "check.nobs.vs.nRE" in model["fallback_reason"]
    assert model["re_formula"] in (f"~ 0 + {PRIMARY}", "~1")
    # and with the option off, no slope is tried at all
    off = run_plan(linked, {**PLAN, "random_effects": "~1", "random_slope": False})
    model = off["outcomes"]["who5.percentage"]["lagged_model"]
    assert "not_fitted" not in model and model["random_slope"]["used"] is False


def test_a_singular_fit_is_refitted_simpler_and_says_so():
    # given: everyone has the same (zero) lagged slope, so its variance is estimated at zero
    linked = simulate(0.0, seed=12, n=80, waves=10)
    # when
    results = run_plan(linked, {**PLAN, "random_effects": "~1"})
    model = results["outcomes"]["who5.percentage"]["lagged_model"]
    # then: the reported model is the random intercept, and it records what it replaced
    # (the intercept may itself be at zero once the previous outcome's person mean is in the
    # model: that is reported, flagged, as there is nothing simpler)
    assert model["re_formula"] == "~1"
    assert model["refit_from"] == f"~ 1 + {PRIMARY}"
    assert model["refit_reason"].startswith(f"singular fit with ~ 1 + {PRIMARY}")
    assert model["random_slope"]["used"] is False
    assert model["random_slope"]["reason"] == model["refit_reason"]
    # when: the plan does not allow refits
    kept = run_plan(linked, {**PLAN, "random_effects": "~1", "refit_singular": False})
    model = kept["outcomes"]["who5.percentage"]["lagged_model"]
    # then: the singular fit is reported as it is, flagged
    assert model["re_formula"] == f"~ 1 + {PRIMARY}"
    assert model["singular"] is True and "refit_from" not in model


def test_bh_runs_across_outcomes_and_dose_response_has_bins():
    linked = simulate(6.0, seed=2)
    linked["ucla3.total"] = 6 + np.random.default_rng(3).normal(0, 1, len(linked))
    linked = with_lags(linked, ["ucla3.total"])
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
    model = results["outcomes"]["who5.percentage"]["lagged_model"]
    assert model["error"] == "too few participants with complete data (3 < 5)"


def test_a_missing_outcome_column_is_reported():
    results = run_plan(simulate(0.0, seed=5), {**PLAN, "outcomes": ["phq9.total"]})
    entry = results["outcomes"]["phq9.total"]
    assert entry["lagged_model"]["error"] == "no column 'phq9.total'"
    assert entry["association_model"]["error"] == "no column 'phq9.total'"
    assert results["primary"]["q"]["phq9.total"] is None


def test_cluster_robust_tests_are_the_cr2_sandwich_of_the_fitted_model():
    # given: a random-intercept fit on an unbalanced panel
    rng = np.random.default_rng(21)
    sizes = rng.integers(2, 6, size=25)
    pid = np.repeat(np.arange(25), sizes)
    frame = pd.DataFrame({"participant": [f"p{i}" for i in pid], "x": rng.normal(size=pid.size)})
    frame["y"] = 1 + 0.5 * frame["x"] + rng.normal(0, 1, 25)[pid] + rng.normal(size=pid.size)
    result = fit_mixedlm("y ~ x", frame, "participant", "~1")
    # when
    robust = cluster_robust(result, frame)
    # then: it equals CR2 computed the long way (whole matrices, matrix square roots)
    X = np.column_stack([np.ones(len(frame)), frame["x"]])
    tau2 = result.random_cov[0, 0]
    same = (pid[:, None] == pid[None, :]).astype(float)
    V = tau2 * same + result.residual_sd**2 * np.eye(len(frame))
    half = np.real(sqrtm(np.linalg.inv(V)))
    Xw, ew = (
        half @ X,
        half @ (frame["y"].to_numpy() - X @ [result.fixed[n].estimate for n in ("Intercept", "x")]),
    )
    bread = np.linalg.inv(Xw.T @ Xw)
    H = Xw @ bread @ Xw.T
    meat = np.zeros((2, 2))
    for g in range(25):
        rows = np.flatnonzero(pid == g)
        adjust = np.real(sqrtm(np.linalg.inv(np.eye(rows.size) - H[np.ix_(rows, rows)])))
        score = Xw[rows].T @ adjust @ ew[rows]
        meat += np.outer(score, score)
    se = np.sqrt(np.diag(bread @ meat @ bread))
    # (the CR2 adjustment is taken with the Cholesky factor of each person's working covariance,
    # as clubSandwich does, not with its symmetric square root as here: the two CR2 variants
    # agree to ~1e-4, not to rounding)
    assert robust["x"]["se"] == pytest.approx(se[1], rel=1e-3)
    assert robust["Intercept"]["se"] == pytest.approx(se[0], rel=1e-3)
    # and its df are the Bell-McCaffrey df of that variance (analysis.stats.robust), below the
    # participants - 1 of a plain cluster t test on this unbalanced panel
    bm = mixed_cluster_robust(result, frame).coefficients["x"]
    assert robust["x"]["se"] == pytest.approx(bm.se, rel=1e-12)
    assert robust["x"]["df"] == pytest.approx(bm.df, rel=1e-12)
    assert robust["x"]["p"] == pytest.approx(bm.p, rel=1e-12)
    assert 5 < robust["x"]["df"] < 24
    assert robust["x"]["estimate"] == result.fixed["x"].estimate
    # and under a correct model it is close to the model-based SE
    assert robust["x"]["se"] == pytest.approx(result.fixed["x"].se, rel=0.35)
