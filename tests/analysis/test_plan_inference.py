"""Inference in plan results and the report: the p-value method, refused random-effect fits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analysis.plan import run_plan
from analysis.report import render_report

PLAN = {
    "outcomes": ["who5.percentage"],
    "predictors": ["messages_sent"],
    "covariates": [],
    "random_effects": "~ wave",
    "arm_by_time": True,
}


def baseline_and_one_wave(n: int = 30, seed: int = 11) -> pd.DataFrame:
    """Every participant answered the baseline and one follow-up: 2 rows per person."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), 2)
    wave = np.tile([0.0, 1.0], n)
    frame = pd.DataFrame(
        {
            "participant": [f"p{i}" for i in pid],
            "arm": np.where(np.arange(n) % 2 == 0, "legacy", "current")[pid],
            "wave": wave,
            "messages_sent": rng.poisson(10, size=pid.size).astype(float),
        }
    )
    mean = frame.groupby("participant")["messages_sent"].transform("mean")
    frame["messages_sent_between"] = mean
    frame["messages_sent_within"] = frame["messages_sent"] - mean
    frame["who5.percentage"] = 50 + rng.normal(0, 10, n)[pid] + rng.normal(0, 5, pid.size)
    return frame


def test_random_slopes_on_baseline_plus_one_wave_are_refused_and_the_report_says_so():
    # given: 60 rows, 30 people; (1 + wave | participant) has 60 random effects
    linked = baseline_and_one_wave()
    # when
    results = run_plan(linked, PLAN)
    # then: the random-slope structure is listed as not fitted, with lme4's reason
    model = results["outcomes"]["who5.percentage"]["usage_model"]
    (refused,) = model["not_fitted"]
    assert refused["re_formula"] == "~ wave"
    assert "60 observations are not more than the 60 random effects" in refused["reason"]
    assert "check.nobs.vs.nRE" in refused["reason"]
    # and what was fitted is the identifiable random intercept, said to be a fallback
    assert model["re_formula"] == "~1"
    assert model["fallback_from"] == "~ wave"
    assert model["p_method"] == "Satterthwaite t"
    assert model["fixed"]["messages_sent_within"]["df"] > 0
    json.dumps(results, allow_nan=False)
    # when: the report is rendered
    html = render_report(results, {"linked": linked}, {"title": "T", "study": "s"})
    # then: a "not fitted" row names the structure and the reason, and is not called converged
    row = html.split('data-not-fitted="usage_model:who5.percentage">', 1)[1].split("</p>", 1)[0]
    assert "<code>~ wave</code>: not fitted: 60 observations are not more than" in row
    assert "converged" not in row
    assert 'data-not-fitted="arm_time_model:who5.percentage"' in html


def test_a_model_with_one_row_per_person_is_not_fitted_at_all():
    # given: each person answered a single survey (at wave 0, 1 or 2), so every group has one
    # observation: even a random intercept cannot be told apart from the residual
    linked = baseline_and_one_wave(n=60).iloc[::2].copy()
    linked["wave"] = np.arange(len(linked)) % 3
    results = run_plan(linked, PLAN)
    model = results["outcomes"]["who5.percentage"]["arm_time_model"]
    # then: an error naming lme4's check, no fixed effects, nothing claimed converged
    assert "check.nobs.vs.nlev" in model["error"]
    assert "fixed" not in model and "converged" not in model
    assert [item["re_formula"] for item in model["not_fitted"]] == ["~ wave", "~1"]
    html = render_report(results, {"linked": linked}, {"title": "T", "study": "s"})
    row = html.split('data-table="arm_time_model:who5.percentage">', 1)[1].split("</p>", 1)[0]
    assert row.startswith("Arm × time model: not fitted: ~ wave: 60 observations for 60 levels")
    assert "; ~1: 60 observations for 60 levels" in row
    assert "converged" not in row


def test_the_report_names_the_p_value_method_wherever_p_values_appear():
    # given: a cohort with 6 waves, where every model is fitted
    rng = np.random.default_rng(3)
    frames = []
    for seed in range(2):
        frame = baseline_and_one_wave(n=20, seed=seed)
        frame["wave"] = frame["wave"] + 2 * seed
        frames.append(frame)
    linked = pd.concat(frames, ignore_index=True)
    linked["who5.percentage"] += rng.normal(0, 1, len(linked))
    results = run_plan(linked, PLAN)
    assert results["primary"]["p_method"] == "Satterthwaite t"
    # when
    html = render_report(results, {"linked": linked}, {"title": "T", "study": "s"})
    # then: the primary table, every model table and the note above them name the method
    assert "<th>p (Satterthwaite t)</th><th>q (Holm)</th>" in html
    assert html.count("<th>df</th><th>t</th><th>p (Satterthwaite t)</th>") == 2
    assert 'data-p-method="Satterthwaite t"' in html
    assert "<th>p</th>" not in html


def test_results_stored_before_satterthwaite_are_labelled_wald_z():
    # given: results as an older run stored them (no df, t or p_method)
    results = run_plan(baseline_and_one_wave(), {**PLAN, "random_effects": "~1"})
    model = results["outcomes"]["who5.percentage"]["usage_model"]
    for term in model["fixed"].values():
        del term["df"], term["t"]
    del model["p_method"], results["primary"]["p_method"]
    results["primary"]["method"] = "Benjamini-Hochberg"  # the only correction then
    # when
    html = render_report(results, {}, {"title": "T", "study": "s"})
    # then: those p-values are not passed off as Satterthwaite ones
    assert "<th>p (Wald z)</th><th>q (BH)</th>" in html
    assert "p-values and 95% CIs: Wald z" in html
    assert 'data-p-method="Wald z"' in html
