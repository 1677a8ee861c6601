"""Sensitivity analyses of the primary term (analysis/sensitivity.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import block_diag

from analysis import sensitivity
from analysis.plan import model_frame, run_plan
from analysis.sensitivity import (
    _FixedThetaRefit,
    centre,
    previous_positions,
    relag,
    sensitivity_analyses,
)
from analysis.services import analysis_run_create, analysis_run_execute
from analysis.stats.mixedlm import fit_mixedlm
from analysis.stats.robust import mixed_cluster_robust

OUTCOME = "who5.percentage"
PLAN = {
    "outcomes": [OUTCOME],
    "predictors": ["messages_sent"],
    "covariates": [],
    "random_effects": "~ wave",
    # The primary keeps the plan's structure, so the alternatives compared are the other ones.
    "random_slope": False,
    "mnar_deltas": [0, 0.5, 1.0],
    "mnar_imputations": 10,
}


def with_lags(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``<c>_lag``: the value at the participant's previous scheduled occasion among the rows
    of ``frame`` (NaN when that occasion is not a row), as the linking step adds them."""
    frame = frame.drop(columns=[f"{c}_lag" for c in columns], errors="ignore")
    previous = frame[["participant", "occasion", *columns]].assign(occasion=frame["occasion"] + 1)
    previous = previous.rename(columns={c: f"{c}_lag" for c in columns})
    return frame.merge(previous, on=["participant", "occasion"], how="left")


LAGGED = ["messages_sent", OUTCOME]


def cohort(
    *, seed: int, n: int = 60, waves: int = 6, effect: float = 0.3, dropout: str = "mcar"
) -> pd.DataFrame:
    """Every scheduled occasion of ``n`` people (baseline + weekly), usage always observed.

    y = 50 + person level + 2·[after baseline] + effect·(usage at the previous occasion −
    person mean) + noise (a lagged within-person effect, as the primary model estimates).
    Outcomes are missing from a random wave on for ~half the people: at random (``"mcar"``),
    or after the person's usage fell (``"low_usage"``: missed occasions are the low-usage ones).
    """
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), waves)
    wave = np.tile(np.arange(waves), n).astype(float)
    rate = rng.gamma(4.0, 4.0, size=n)[pid]
    usage = np.where(wave == 0, 0.0, rng.poisson(rate).astype(float))
    frame = pd.DataFrame(
        {
            "participant": [f"p{i:02d}" for i in pid],
            "wave": wave,
            "occasion": wave,
            "messages_sent": usage,
        }
    )
    mean = frame.groupby("participant")["messages_sent"].transform("mean")
    previous = frame.groupby("participant")["messages_sent"].shift(1)
    y = (
        50
        + rng.normal(0, 8, size=n)[pid]
        + 2.0 * (wave > 0)
        + effect * (previous - mean).fillna(0).to_numpy()
        + rng.normal(0, 4, size=len(frame))
    )
    start = rng.integers(2, waves, size=n)[pid]
    drops = (rng.random(n) < 0.5)[pid]
    at_random = drops & (wave >= start)
    missing = at_random if dropout == "mcar" else drops & (wave >= 2) & (usage < mean)
    frame[OUTCOME] = np.where(missing, np.nan, y)
    return with_lags(frame, LAGGED)


def linked_of(grid: pd.DataFrame) -> pd.DataFrame:
    """The linked table (answered occasions only), centred and lagged as the linking does."""
    outcomes = [c for c in grid.columns if "." in c and not c.endswith("_lag")]
    linked = grid.dropna(subset=[OUTCOME]).reset_index(drop=True)
    mean = linked.groupby("participant")["messages_sent"].transform("mean")
    linked["messages_sent_between"] = mean
    linked["messages_sent_within"] = linked["messages_sent"] - mean
    return with_lags(linked, ["messages_sent", *outcomes])


def entries_by_key(entries):
    return {e["key"]: e for e in entries}


def test_every_analysis_gives_a_result_for_the_primary_term():
    # given
    grid = cohort(seed=1)
    linked = linked_of(grid)
    results = run_plan(linked, PLAN)
    # when
    entries = sensitivity_analyses(linked, PLAN, results, grid=grid)
    term = results["primary"]["term"]
    assert (results["primary"]["model"], term) == ("lagged_model", "messages_sent_lag_within")
    # then: excluding baseline, the two structures the primary did not use (of a random
    # intercept, a random slope on the usage term and one on time), the robust SE and one entry
    # per δ, each with the primary term's numbers
    used = sensitivity._compact(results["outcomes"][OUTCOME]["lagged_model"]["re_formula"])
    structures = {"re_intercept": "~1", "re_slope_usage": f"~ {term}", "re_slope_time": "~ wave"}
    others = [k for k, re in structures.items() if sensitivity._compact(re) != used]
    assert len(others) == 2
    keys = [e["key"] for e in entries]
    assert keys == [
        "exclude_baseline",
        *others,
        "cluster_robust",
        "mnar_delta_0sd",
        "mnar_delta_0.5sd",
        "mnar_delta_1sd",
    ]
    for entry in entries:
        assert set(entry) >= {"key", "name", "description", "outcomes", "note"}
        assert "error" not in entry, entry
        row = entry["outcomes"][OUTCOME]
        assert "error" not in row, (entry["key"], row)
        assert row["term"] == term
        assert row["ci_low"] < row["estimate"] < row["ci_high"]
        assert row["se"] > 0 and 0 <= row["p"] <= 1
    by_key = entries_by_key(entries)
    for key in others:
        fitted = by_key[key]["outcomes"][OUTCOME]["re_formula"]
        assert sensitivity._compact(fitted) == sensitivity._compact(structures[key])
    # and everything is plain JSON
    json.dumps(entries, allow_nan=False)


def test_excluding_baseline_removes_the_baseline_rows_and_recentres_on_the_rest():
    # given
    grid = cohort(seed=2)
    linked = linked_of(grid)
    results = run_plan(linked, PLAN)
    # when
    entry = entries_by_key(sensitivity_analyses(linked, PLAN, results))["exclude_baseline"]
    # then: every wave-0 row is gone, and the lags of wave 1 with it (its previous occasion
    # was the baseline)
    row = entry["outcomes"][OUTCOME]
    assert row["rows_removed"] == int((linked["wave"] == 0).sum()) == 60
    # and the estimate is the one of the lagged model fitted by hand on the follow-up rows with
    # a previous follow-up occasion: log usage at t − 1 centred on the person's mean over those
    # rows, the outcome's change since t − 1
    follow = with_lags(linked[linked["wave"] > 0], LAGGED)
    follow = follow.dropna(subset=[f"{OUTCOME}_lag", "messages_sent_lag"]).copy()
    usage = np.log1p(follow["messages_sent_lag"])
    mean = usage.groupby(follow["participant"]).transform("mean")
    follow["messages_sent_lag_between"] = mean
    follow["messages_sent_lag_within"] = usage - mean
    follow[f"{OUTCOME}_change"] = follow[OUTCOME] - follow[f"{OUTCOME}_lag"]
    assert row["n_obs"] == len(follow) < int((linked["wave"] > 0).sum())
    model = results["outcomes"][OUTCOME][results["primary"]["model"]]
    term = results["primary"]["term"]
    by_hand = fit_mixedlm(model["formula"], follow, "participant", model["re_formula"])
    assert row["estimate"] == pytest.approx(by_hand.fixed[term].estimate)
    assert row["estimate"] != pytest.approx(model["fixed"][term]["estimate"], rel=1e-3)


def test_a_lag_never_refers_to_a_removed_baseline_row():
    # given: two people, waves 0-2, a lagged outcome column
    frame = pd.DataFrame(
        {
            "participant": ["a", "a", "a", "b", "b"],
            "wave": [0.0, 1.0, 2.0, 0.0, 2.0],
            "y": [1.0, 2.0, 3.0, 10.0, 30.0],
        }
    )
    frame["y_lag"] = [np.nan, 1.0, 2.0, np.nan, np.nan]
    waves = frame["wave"].unique()
    # when: baseline rows are removed
    out = relag(frame[frame["wave"] > 0], waves)
    # then: wave 1 lost its lag (its previous occasion was the baseline), wave 2 kept wave 1's,
    # and b's wave 2 has none (b missed wave 1)
    assert out["y_lag"].tolist()[0] != out["y_lag"].tolist()[0]  # NaN
    assert out["y_lag"].tolist()[1] == 2.0
    assert np.isnan(out["y_lag"].tolist()[2])
    assert previous_positions(frame, waves).tolist() == [-1, 0, 1, -1, -1]


def test_the_robust_entry_is_the_cr2_sandwich_of_the_primary_fit():
    # given
    grid = cohort(seed=3)
    linked = linked_of(grid)
    results = run_plan(linked, PLAN)
    model = results["outcomes"][OUTCOME][results["primary"]["model"]]
    term = results["primary"]["term"]
    # when
    row = entries_by_key(sensitivity_analyses(linked, PLAN, results))["cluster_robust"]["outcomes"][
        OUTCOME
    ]
    # then: the primary estimate with the CR2 standard error and Bell-McCaffrey df, on the
    # rows and terms the primary was fitted on
    frame, formula, _ = model_frame(linked, OUTCOME, PLAN, lagged=True)
    assert formula == model["formula"]
    fit = fit_mixedlm(formula, frame, "participant", model["re_formula"])
    robust = mixed_cluster_robust(fit, frame).coefficients[term]
    assert row["estimate"] == pytest.approx(model["fixed"][term]["estimate"])
    assert row["se"] == pytest.approx(robust.se)
    assert row["df"] == pytest.approx(robust.df)
    # (the primary reports its own sandwich tests; the model-based ones are kept aside)
    assert row["model_se"] == pytest.approx(model["fixed_model"][term]["se"])
    assert row["se"] != pytest.approx(row["model_se"], rel=1e-3)


def test_the_fixed_theta_refit_reproduces_a_full_fit_on_the_same_data():
    # given: a fit, and the refit machinery the imputation loop uses
    grid = cohort(seed=4)
    linked = linked_of(grid)
    formula = f"{OUTCOME} ~ messages_sent_within + messages_sent_between + wave"
    data = centre(linked, formula, "~ wave", recompute=True)
    fit = fit_mixedlm(formula, data, "participant", "~ wave")
    prev = previous_positions(data, data["wave"].unique())
    refit = _FixedThetaRefit(data, fit, OUTCOME, prev)
    # when: refitted with θ held at the fit's value on the very same outcome
    j = fit.fixed_names.index("messages_sent_within")
    estimate, variance = refit(data[OUTCOME].to_numpy(dtype=float), j)
    # then: the same estimate and model-based variance
    assert estimate == pytest.approx(fit.fixed["messages_sent_within"].estimate, rel=1e-8)
    assert variance == pytest.approx(fit.fixed["messages_sent_within"].se ** 2, rel=1e-6)


def test_the_fixed_theta_refit_of_a_change_model_reproduces_a_full_fit():
    # given: the primary lagged model (the change since the previous occasion as response),
    # prepared on the occasion grid as the imputation loop prepares it
    grid = cohort(seed=4)
    waves = grid["wave"].unique()
    y = grid[OUTCOME].fillna(55.0).to_numpy(dtype=float)
    prev = previous_positions(grid, waves)
    completed = grid.assign(**{OUTCOME: y, f"{OUTCOME}_lag": np.where(prev >= 0, y[prev], np.nan)})
    frame, formula, _ = model_frame(completed, OUTCOME, PLAN, lagged=True)
    assert formula.startswith(f"{OUTCOME}_change ~")
    fit = fit_mixedlm(formula, frame, "participant", "~1")
    refit = _FixedThetaRefit(frame, fit, OUTCOME, prev)
    # when: refitted with θ held at the fit's value on the very same outcome
    j = fit.fixed_names.index("messages_sent_lag_within")
    estimate, variance = refit(y, j)
    # then: the change model's estimate and variance, not those of a model of the level
    assert estimate == pytest.approx(fit.fixed["messages_sent_lag_within"].estimate, rel=1e-8)
    assert variance == pytest.approx(fit.fixed["messages_sent_lag_within"].se ** 2, rel=1e-6)


def test_delta_zero_imputation_reproduces_the_mar_estimate_within_monte_carlo_error():
    # given: outcomes missing completely at random, usage known on every occasion
    grid = cohort(seed=5, effect=0.3)
    linked = linked_of(grid)
    results = run_plan(linked, PLAN)
    model = results["outcomes"][OUTCOME][results["primary"]["model"]]
    primary = model["fixed_model"][results["primary"]["term"]]
    # when
    row = entries_by_key(sensitivity_analyses(linked, PLAN, results, grid=grid))["mnar_delta_0sd"][
        "outcomes"
    ][OUTCOME]
    # then: ~80 missed occasions were imputed, and the pooled estimate agrees with the
    # complete-case one to well within one standard error (both estimate the same thing)
    assert row["term"] == results["primary"]["term"]
    assert row["n_imputed"] == int(grid[OUTCOME].isna().sum()) > 50
    assert row["m"] == 10 and row["delta"] == 0
    assert abs(row["estimate"] - primary["estimate"]) < 0.5 * primary["se"]
    assert 0 < row["fmi"] < 1


def test_a_larger_delta_moves_the_estimate_in_the_stated_direction():
    # given: missed occasions are those with less use than the person's average, and WHO-5 is
    # better when higher, so the MNAR shift makes them worse (lower)
    grid = cohort(seed=6, dropout="low_usage")
    linked = linked_of(grid)
    results = run_plan(linked, PLAN)
    # when
    entries = sensitivity_analyses(linked, PLAN, results, grid=grid)
    rows = [e["outcomes"][OUTCOME] for e in entries if e["key"].startswith("mnar_delta_")]
    # then: the shift is downwards, in outcome SDs. The primary models the change since the
    # previous occasion on the previous occasion's usage: a missed occasion had low usage, and
    # lowering its imputed outcome raises the next occasion's change, whose lagged usage is
    # that low usage, so the lagged usage slope falls with δ
    sd = grid[OUTCOME].std()
    assert [r["direction"] for r in rows] == ["lower"] * 3
    assert [r["delta"] for r in rows] == pytest.approx([0.0, -0.5 * sd, -1.0 * sd])
    estimates = [r["estimate"] for r in rows]
    assert estimates[0] > estimates[1] > estimates[2]
    # and for an outcome where higher is worse the shift goes up and the slope rises
    grid["phq9.total"] = -grid[OUTCOME]
    grid = with_lags(grid, ["phq9.total"])
    linked = linked_of(grid)
    plan = {**PLAN, "outcomes": ["phq9.total"]}
    entries = sensitivity_analyses(linked, plan, run_plan(linked, plan), grid=grid)
    rows = [e["outcomes"]["phq9.total"] for e in entries if e["key"].startswith("mnar_delta_")]
    assert [r["direction"] for r in rows] == ["higher"] * 3
    assert rows[0]["estimate"] < rows[1]["estimate"] < rows[2]["estimate"]


def test_the_imputations_are_reproducible():
    grid = cohort(seed=7)
    linked = linked_of(grid)
    results = run_plan(linked, PLAN)
    first = sensitivity_analyses(linked, PLAN, results, grid=grid)
    second = sensitivity_analyses(linked, PLAN, results, grid=grid)
    assert first == second


def test_a_failing_analysis_is_reported_as_an_error_and_the_others_still_run(monkeypatch):
    # given: the robust analysis breaks unexpectedly
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(sensitivity, "_robust", broken)
    grid = cohort(seed=8)
    linked = linked_of(grid)
    results = run_plan(linked, PLAN)
    # when
    by_key = entries_by_key(sensitivity_analyses(linked, PLAN, results, grid=grid))
    # then
    assert by_key["cluster_robust"]["error"] == "RuntimeError: boom"
    # (repeated on the outcome rows, which is what a report's table lists)
    assert by_key["cluster_robust"]["outcomes"][OUTCOME] == {"error": "RuntimeError: boom"}
    assert "error" not in by_key["exclude_baseline"]
    assert "estimate" in by_key["mnar_delta_0sd"]["outcomes"][OUTCOME]


def test_an_outcome_of_unknown_direction_names_the_plan_key_to_set():
    grid = cohort(seed=9)
    grid["custom.score"] = grid[OUTCOME]
    grid = with_lags(grid, ["custom.score"])
    linked = linked_of(grid)
    plan = {**PLAN, "outcomes": ["custom.score"]}
    entries = sensitivity_analyses(linked, plan, run_plan(linked, plan), grid=grid)
    row = entries_by_key(entries)["mnar_delta_0sd"]["outcomes"]["custom.score"]
    assert row == {
        "error": "which direction of 'custom.score' is unfavourable is unknown: set "
        "analysis.higher_is_better.custom.score to true or false"
    }
    # and declaring it in the plan is enough
    plan["higher_is_better"] = {"custom.score": True}
    entries = sensitivity_analyses(linked, plan, run_plan(linked, plan), grid=grid)
    assert "estimate" in entries_by_key(entries)["mnar_delta_0sd"]["outcomes"]["custom.score"]


def test_an_unfitted_primary_model_gives_an_error_per_analysis():
    # given: four participants only (the plan needs five)
    grid = cohort(seed=10, n=4)
    linked = linked_of(grid)
    results = run_plan(linked, PLAN)
    assert "error" in results["outcomes"][OUTCOME][results["primary"]["model"]]
    # when
    entries = sensitivity_analyses(linked, PLAN, results, grid=grid)
    # then: every entry is there, each saying why it has no numbers
    assert len(entries) >= 5
    for entry in entries:
        assert entry["outcomes"][OUTCOME]["error"].startswith("the primary model was not fitted")


@pytest.mark.django_db
def test_a_run_on_a_simulated_study_reports_every_sensitivity_analysis(simulated_study):
    # when: a researcher's analysis run (the real code path: frames → analyse → results)
    run = analysis_run_execute(run=analysis_run_create(study=simulated_study, enqueue=False))
    # then
    assert run.status == "done", run.error
    entries = entries_by_key(run.results["sensitivity"])
    assert {"exclude_baseline", "cluster_robust", "mnar_delta_0sd"} <= set(entries)
    # every random-effect structure the primary (lagged) models did not all use is compared
    key = run.results["primary"]["model"]
    assert key == "lagged_model"
    used = {
        sensitivity._compact(entry[key]["re_formula"]) for entry in run.results["outcomes"].values()
    }
    term = run.results["primary"]["term"]
    structures = {"re_intercept": "~1", "re_slope_usage": f"~ {term}"}
    expected = {k for k, re in structures.items() if used != {sensitivity._compact(re)}}
    assert expected and expected <= set(entries)
    for entry in entries.values():
        assert all(row.get("term", term) == term for row in entry["outcomes"].values())
    for entry in entries.values():
        assert "error" not in entry, entry
        for outcome, row in entry["outcomes"].items():
            primary_re = run.results["outcomes"][outcome][key]["re_formula"]
            if entry["key"].startswith("re_") and row.get("error", "").startswith(
                "the primary model already uses"
            ):
                # not applicable: this outcome's primary fit already has that structure (the
                # outcomes' primary fits may differ: a random slope is kept only where the data
                # identify it), said in the row
                named = row["error"].removeprefix("the primary model already uses ")
                assert sensitivity._compact(primary_re) == sensitivity._compact(named)
                continue
            assert "error" not in row, (entry["key"], outcome, row)
    # and the missed occasions of the simulated dropouts were found and imputed
    mnar = entries["mnar_delta_0.5sd"]["outcomes"]["who5.percentage"]
    assert mnar["n_imputed"] > 0
    assert "were not available" not in entries["mnar_delta_0.5sd"]["note"]


def test_a_lagged_primary_model_gets_its_outcome_lag_recomputed_from_the_imputations():
    # given: a primary model adjusting for the previous occasion's outcome (as a lagged model
    # does), so every imputed outcome also changes the next row's predictor
    grid = cohort(seed=11)
    lag = f"{OUTCOME}_lag"
    grid = relag(grid.assign(**{lag: np.nan}), grid["wave"].unique())
    linked = linked_of(grid)
    formula = f"{OUTCOME} ~ messages_sent_within + messages_sent_between + {lag} + wave"
    data = centre(linked, formula, "~1", recompute=True)
    fit = fit_mixedlm(formula, data, "participant", "~1")
    prev = previous_positions(grid, grid["wave"].unique())

    def completed(fill: float) -> tuple[np.ndarray, pd.DataFrame]:
        y = grid[OUTCOME].fillna(fill).to_numpy(dtype=float)
        lagged = np.where(prev >= 0, y[prev], np.nan)
        frame = grid.assign(**{OUTCOME: y, lag: lagged})
        return y, centre(frame, formula, "~1", recompute=True)

    # when: the design is built on one completed table and refitted with another outcome
    refit = _FixedThetaRefit(completed(60.0)[1], fit, OUTCOME, prev)
    filled, prepared = completed(40.0)
    j = fit.fixed_names.index("messages_sent_within")
    estimate, variance = refit(filled, j)
    # then: the same as generalised least squares by hand on the fully rebuilt table
    rows = prepared.dropna(subset=[OUTCOME, lag, "messages_sent_within"])
    X = np.column_stack(
        [
            np.ones(len(rows)),
            rows["messages_sent_within"],
            rows["messages_sent_between"],
            rows[lag],
            rows["wave"],
        ]
    )
    y = rows[OUTCOME].to_numpy()
    tau2 = fit.random_cov[0, 0] / fit.residual_sd**2
    blocks = [
        np.eye(n) + tau2 * np.ones((n, n)) for n in rows.groupby("participant", sort=True).size()
    ]
    order = np.argsort(rows["participant"].to_numpy(), kind="stable")
    X, y = X[order], y[order]
    W = np.linalg.inv(block_diag(*blocks))
    A = X.T @ W @ X
    beta = np.linalg.solve(A, X.T @ W @ y)
    resid = y - X @ beta
    sigma2 = float(resid @ W @ resid) / (len(y) - X.shape[1])
    assert estimate == pytest.approx(beta[1], rel=1e-8)
    assert variance == pytest.approx(sigma2 * np.linalg.inv(A)[1, 1], rel=1e-6)
    # and the whole MNAR analysis runs on such a model: the primary lagged model adjusting for
    # the previous outcome (person mean and deviation) instead of modelling the change
    plan = {**PLAN, "random_effects": "~1", "lagged_outcome": "adjust"}
    results = run_plan(linked, plan)
    primary = results["outcomes"][OUTCOME][results["primary"]["model"]]
    assert f"{lag}_within" in primary["fixed"] and primary["re_formula"] == "~1"
    entries = entries_by_key(sensitivity_analyses(linked, plan, results, grid=grid))
    row = entries["mnar_delta_1sd"]["outcomes"][OUTCOME]
    assert row["n_imputed"] > 0 and row["term"] == results["primary"]["term"]
    assert "re_intercept" not in entries  # the primary already is a random-intercept model
    assert "estimate" in entries["re_slope_time"]["outcomes"][OUTCOME]


def test_the_plan_modules_model_frame_builds_the_terms_when_it_has_one(monkeypatch):
    # given: a plan module whose primary model uses log usage (as a usage transform does),
    # built by its own model_frame
    from analysis import plan as plan_module

    def model_frame(data, outcome, plan, *, lagged):
        frame = data.dropna(subset=[outcome, "messages_sent"]).copy()
        frame["messages_sent"] = np.log1p(frame["messages_sent"])
        mean = frame.groupby("participant")["messages_sent"].transform("mean")
        frame["messages_sent_within"] = frame["messages_sent"] - mean
        frame["messages_sent_between"] = mean
        formula = f"{outcome} ~ messages_sent_within + messages_sent_between + wave"
        return frame, formula, {}

    monkeypatch.setattr(plan_module, "model_frame", model_frame, raising=False)
    monkeypatch.setattr(plan_module, "PRIMARY_MODEL", "lagged_model", raising=False)
    grid = cohort(seed=12)
    linked = linked_of(grid)
    frame, formula, _ = model_frame(linked, OUTCOME, PLAN, lagged=True)
    fit = fit_mixedlm(formula, frame, "participant", "~1")
    fixed = {"messages_sent_within": {"estimate": fit.fixed["messages_sent_within"].estimate}}
    results = {
        "plan": {"outcomes": [OUTCOME]},
        "primary": {"term": "messages_sent_within", "model": "lagged_model"},
        "outcomes": {
            OUTCOME: {
                "lagged_model": {
                    "formula": formula,
                    "re_formula": "~1",
                    "fixed": fixed,
                    "n_obs": fit.n_obs,
                }
            }
        },
    }
    # when
    by_key = entries_by_key(sensitivity_analyses(linked, PLAN, results, grid=grid))
    # then: the robust entry is on the log scale (the primary's estimate), not the raw one
    robust = by_key["cluster_robust"]["outcomes"][OUTCOME]
    assert robust["estimate"] == pytest.approx(fit.fixed["messages_sent_within"].estimate)
    assert robust["model_se"] == pytest.approx(fit.fixed["messages_sent_within"].se)
    # and excluding baseline refits on log usage centred over the follow-up rows
    follow, _, _ = model_frame(linked[linked["wave"] > 0], OUTCOME, PLAN, lagged=True)
    by_hand = fit_mixedlm(formula, follow, "participant", "~1")
    row = by_key["exclude_baseline"]["outcomes"][OUTCOME]
    assert row["estimate"] == pytest.approx(by_hand.fixed["messages_sent_within"].estimate)
    assert "estimate" in by_key["mnar_delta_0sd"]["outcomes"][OUTCOME]


def test_excluding_baseline_says_so_when_the_primary_never_used_it():
    # given: a primary fitted on follow-up rows only (as a lagged model with a pre-enrolment
    # baseline window is)
    grid = cohort(seed=13)
    grid.loc[grid["wave"] == 0, "messages_sent"] = np.nan
    grid["window_before_enrollment"] = grid["wave"] == 0
    linked = with_lags(linked_of(grid), ["window_before_enrollment"])
    results = run_plan(linked, {**PLAN, "random_effects": "~1"})
    assert results["outcomes"][OUTCOME]["lagged_model"]["excluded"][
        "previous occasion not answered"
    ] == int((linked["wave"] == 0).sum())
    # when
    row = entries_by_key(sensitivity_analyses(linked, PLAN, results))["exclude_baseline"][
        "outcomes"
    ][OUTCOME]
    # then
    assert row["note"] == "same rows and estimate as the primary: it does not use the baseline"
    assert entries_by_key(sensitivity_analyses(linked, PLAN, results))["exclude_baseline"][
        "note"
    ] == (f"{OUTCOME}: same rows and estimate as the primary: it does not use the baseline.")
