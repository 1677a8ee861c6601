"""Factorial analysis: main effects and interactions by factor name, effect coding, on a
simulated factorial cohort with a planted main effect and no interaction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.factorial import factorial_effects, fit_factorial
from analysis.plan import run_plan
from analysis.report import render_report

Y = "who5.percentage"
MODALITY = ("text", "voice")
TASK = ("open", "personal", "impersonal")
ARM_LEVELS = {f"{m}_{t}": {"modality": m, "task": t} for m in MODALITY for t in TASK}
FACTORS = [("modality", MODALITY), ("task", TASK)]


def cohort(
    *, per_cell: int = 30, waves: int = 3, voice_effect: float = 4.0, seed: int = 0
) -> pd.DataFrame:
    """A 2 x 3 factorial cohort: voice raises the outcome by `voice_effect` points after
    baseline, the task does nothing and there is no interaction."""
    rng = np.random.default_rng(seed)
    rows = []
    arms = sorted(ARM_LEVELS)
    for i in range(per_cell * len(arms)):
        arm = arms[i % len(arms)]
        person = rng.normal(60, 8)
        gender = "woman" if rng.random() < 0.5 else "man"
        for wave in range(waves + 1):
            mean = person + (3.0 if gender == "woman" else 0.0) + 0.5 * wave
            if wave > 0 and ARM_LEVELS[arm]["modality"] == "voice":
                mean += voice_effect
            rows.append((f"p{i:04d}", arm, float(wave), mean + rng.normal(0, 5), gender))
    return pd.DataFrame(rows, columns=["participant", "arm", "wave", Y, "stratum.gender"])


def by_factor(result: dict, factor: str) -> dict:
    return next(m for m in result["main_effects"] if m["factor"] == factor)


def test_the_planted_main_effect_is_recovered_and_the_interaction_ci_covers_zero():
    # given: voice +4 points, no task effect, no interaction
    result = fit_factorial(
        cohort(), Y, factors=FACTORS, arm_levels=ARM_LEVELS, strata=["stratum.gender"]
    )
    assert "error" not in result, result.get("error")
    modality = by_factor(result, "modality")
    # then: the voice - text difference at the end wave covers the truth and excludes zero
    (difference,) = modality["differences"]
    assert (difference["level"], difference["reference"]) == ("voice", "text")
    assert difference["ci_low"] < 4.0 < difference["ci_high"]
    assert difference["ci_low"] > 0 and difference["p"] < 0.001
    assert modality["test"]["df_num"] == 1 and modality["test"]["p"] < 0.001
    # a two-level factor's F is its t squared
    effects = {e["level"]: e for e in modality["level_effects"]}
    assert modality["test"]["F"] == pytest.approx(effects["voice"]["t"] ** 2, rel=1e-6)
    # and the interaction's every coefficient has a CI covering 0
    (interaction,) = result["interactions"]
    assert interaction["factors"] == ["modality", "task"]
    assert len(interaction["coefficients"]) == 2  # (2 - 1) x (3 - 1)
    for coefficient in interaction["coefficients"]:
        assert coefficient["ci_low"] < 0 < coefficient["ci_high"]
    assert interaction["test"]["df_num"] == 2 and interaction["test"]["p"] > 0.05
    assert result["model"]["p_method"].startswith("Satterthwaite")


def test_effect_coding_gives_level_effects_that_sum_to_zero():
    result = fit_factorial(cohort(), Y, factors=FACTORS, arm_levels=ARM_LEVELS)
    modality = by_factor(result, "modality")
    effects = {e["level"]: e["estimate"] for e in modality["level_effects"]}
    # deviations from the grand mean, not from a reference level (treatment coding's 0, d)
    assert effects["voice"] == pytest.approx(-effects["text"])
    assert effects["voice"] - effects["text"] == pytest.approx(
        modality["differences"][0]["estimate"]
    )
    task = by_factor(result, "task")
    assert sum(e["estimate"] for e in task["level_effects"]) == pytest.approx(0, abs=1e-9)
    assert task["test"]["df_num"] == 2
    assert "effect (sum-to-zero) coding" in result["coding"]


def test_null_cohorts_keep_the_main_effect_tests_at_their_level():
    # given: 40 cohorts with no effect at all
    rejections = 0
    for seed in range(40):
        result = fit_factorial(
            cohort(per_cell=8, voice_effect=0.0, seed=500 + seed),
            Y,
            factors=FACTORS,
            arm_levels=ARM_LEVELS,
        )
        rejections += by_factor(result, "modality")["test"]["p"] < 0.05
    # then: about 5% reject (binomial 40 x 0.05: more than 7 has probability < 0.5%)
    assert rejections <= 7


def test_without_interaction_the_model_has_no_product_terms():
    result = fit_factorial(cohort(), Y, factors=FACTORS, arm_levels=ARM_LEVELS, interaction=False)
    assert result["interactions"] == []
    assert not any(":task[" in term for term in result["model"]["fixed"] if "modality" in term)


def test_a_cell_missing_at_every_follow_up_is_an_error_naming_it():
    linked = cohort()
    linked = linked[~((linked["arm"] == "voice_personal") & (linked["wave"] > 0))]
    result = fit_factorial(linked, Y, factors=FACTORS, arm_levels=ARM_LEVELS)
    assert result["error"] == "no follow-up wave with answers from every cell of the design"


def test_the_plan_asks_by_factor_name_and_run_plan_reports_it():
    plan = {
        "outcomes": [Y],
        "arm_contrast": {"method": "none"},
        "factorial": {
            "factors": ["modality"],
            "interaction": True,
            "design": [
                {"key": "modality", "levels": list(MODALITY)},
                {"key": "task", "levels": list(TASK)},
            ],
            "arm_levels": ARM_LEVELS,
        },
    }
    results = run_plan(cohort(), plan)
    entry = results["factorial"][Y]
    assert entry["factors"] == ["modality"] and entry["interaction"] is False
    assert [m["factor"] for m in entry["main_effects"]] == ["modality"]
    unknown = factorial_effects(
        cohort(), {**plan, "factorial": {**plan["factorial"], "factors": ["voice"]}}
    )
    assert unknown[Y]["error"] == "the protocol has no factor 'voice'"


def both_factors_plan(outcomes: list[str]) -> dict:
    return {
        "outcomes": outcomes,
        "arm_contrast": {"method": "none"},
        "factorial": {
            "factors": ["modality", "task"],
            "design": [
                {"key": "modality", "levels": list(MODALITY)},
                {"key": "task", "levels": list(TASK)},
            ],
            "arm_levels": ARM_LEVELS,
        },
    }


def test_the_report_shows_main_effects_interaction_and_the_coding():
    plan = both_factors_plan([Y])
    linked = cohort()
    results = run_plan(linked, plan)
    html = render_report(results, {"linked": linked}, {"title": "T", "study": "s"})
    assert f'data-table="factorial:{Y}:main_effects"' in html
    assert f'data-table="factorial:{Y}:interactions"' in html
    assert f'data-table="factorial:{Y}:tests"' in html
    assert "<td>voice − text</td>" in html
    assert "interaction modality × task" in html
    assert "coding: effect (sum-to-zero) coding" in html
    assert "p (Satterthwaite t)" in html


RATE = "cls_reliance_rate"


def rate_cohort(*, per_cell: int = 30, waves: int = 3, voice_effect: float = 0.1, seed: int = 1):
    """The same 2 x 3 design with a classifier rate (share of labelled messages) and WHO-5: the
    rate exists only at follow-up (nothing to label before enrolment); voice raises it by
    `voice_effect` at every follow-up wave, the task does nothing."""
    rng = np.random.default_rng(seed)
    linked = cohort(per_cell=per_cell, waves=waves, seed=seed)
    arms = linked["arm"].map(lambda arm: ARM_LEVELS[arm]["modality"])
    person = linked["participant"].map(
        {p: rng.normal(0, 0.06) for p in linked["participant"].unique()}
    )
    rate = 0.3 + 0.01 * linked["wave"] + person + rng.normal(0, 0.05, len(linked))
    rate = rate + np.where(arms == "voice", voice_effect, 0.0)
    linked[RATE] = np.where(linked["wave"] > 0, np.clip(rate, 0, 1), np.nan)
    return linked


def test_a_classifier_rate_gets_the_follow_up_factorial_model_not_a_missing_baseline_error():
    plan = both_factors_plan([Y, RATE])
    linked = rate_cohort()
    results = run_plan(linked, plan)
    entry = results["factorial"][RATE]
    # the rate has no wave 0: fitted over the follow-up waves, said so in the estimand
    assert "error" not in entry, entry.get("error")
    assert entry["baseline"] is False and entry["waves"] == [1.0, 2.0, 3.0]
    assert "follow-up occasions only" in entry["estimand"]
    assert not any(term.startswith("wave[1]") for term in entry["model"]["fixed"])
    # the planted voice effect on the rate is recovered, the task's CI covers 0
    (difference,) = by_factor(entry, "modality")["differences"]
    assert difference["ci_low"] < 0.1 < difference["ci_high"] and difference["ci_low"] > 0
    assert by_factor(entry, "task")["test"]["p"] > 0.01
    # and the survey outcome in the same plan keeps its baseline-constrained model
    assert results["factorial"][Y]["baseline"] is True
    assert results["factorial"][Y]["waves"][0] == 0.0
    html = render_report(results, {"linked": linked}, {"title": "T", "study": "s"})
    assert f'data-table="factorial:{RATE}:main_effects"' in html


def test_a_null_rate_keeps_the_factorial_tests_at_their_level():
    rejections = 0
    for seed in range(40):
        entry = fit_factorial(
            rate_cohort(per_cell=10, voice_effect=0.0, seed=100 + seed),
            RATE,
            factors=FACTORS,
            arm_levels=ARM_LEVELS,
            baseline=False,
        )
        rejections += by_factor(entry, "modality")["test"]["p"] < 0.05
    assert rejections <= 6  # 5% of 40 is 2; 6 or more has probability < 0.5% under the null
