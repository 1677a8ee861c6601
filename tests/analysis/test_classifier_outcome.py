"""A classifier rate as an OUTCOME (analysis/classifier_outcomes.py), through the pure pipeline:
a simulated cohort whose assistant replies are labelled by a classifier, one arm's replies
labelled positive more often, and the arm contrast on the rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.classifier_outcomes import USAGE_MODELS_REFUSED, fit_rate_contrast
from analysis.pipeline import analyse
from analysis.report import render_report
from analysis.simulate import CohortSpec, simulate_cohort

RATE = "cls_sycophancy_rate"
PLAN = {
    "outcomes": ["who5.percentage", RATE],
    "predictors": ["messages_sent"],
    "arm_by_time": True,
    "window_days": 7,
}


def labelled_frames(treatment_rate: float, control_rate: float, seed: int = 11):
    """The cohort's frames with one label per assistant reply: hit with the arm's chance."""
    frames = simulate_cohort(CohortSpec(participants=60, waves=4, skip=0.05), seed=seed).frames
    rng = np.random.default_rng(seed)
    replies = frames.messages[frames.messages["role"] == "assistant"]
    arm = replies["participant"].map(frames.participants.set_index("participant")["arm"])
    chance = np.where(arm == "treatment", treatment_rate, control_rate)
    frames.classifier_labels = pd.DataFrame(
        {
            "participant": replies["participant"].to_numpy(),
            "at": replies["created_at"].to_numpy(),
            "feature": "cls_sycophancy",
            "hit": rng.random(len(replies)) < chance,
        }
    )
    return frames


def test_the_arm_contrast_on_a_rate_finds_the_arm_whose_replies_are_labelled_more_often():
    # given: treatment replies labelled positive 40% of the time, control 10%
    frames = labelled_frames(0.40, 0.10)
    # when: the plan has the rate as an outcome
    results = analyse(frames, PLAN).results
    contrast = results["arm_contrast"][RATE]
    # then: the follow-up arm × wave model finds a difference of about 0.30
    assert "error" not in contrast, contrast.get("error")
    assert contrast["classifier_outcome"] is True
    assert contrast["method"] == "arm_by_wave_followup"
    assert 0 not in contrast["waves"]  # no baseline: follow-up occasions only
    (end,) = contrast["end_of_study"]
    assert end["arm"] == "treatment" and end["reference"] == "control"
    assert end["ci_low"] < 0.30 < end["ci_high"]
    assert end["p"] < 0.001
    means = {(m["arm"], m["wave"]): m["estimate"] for m in contrast["means"]}
    assert means[("control", contrast["end_wave"])] == pytest.approx(0.10, abs=0.04)
    # the usage models are refused with the reason; the survey outcome keeps all of its own
    entry = results["outcomes"][RATE]
    assert entry["lagged_model"]["error"] == USAGE_MODELS_REFUSED
    assert entry["association_model"]["error"] == USAGE_MODELS_REFUSED
    assert "dose_response" not in entry
    assert "fixed" in entry["null_model"]
    assert results["primary"]["p"][RATE] is None
    assert results["primary"]["p"]["who5.percentage"] is not None
    assert "fixed" in results["outcomes"]["who5.percentage"]["lagged_model"]
    # the sensitivity analyses (about the primary usage model) say why they are not computed
    for analysis in results["sensitivity"]:
        assert USAGE_MODELS_REFUSED in analysis["outcomes"][RATE]["error"]
    (member,) = [r for r in results["multiplicity"]["family"] if r["outcome"] == RATE]
    assert member["p"] is None and member["missing"] == USAGE_MODELS_REFUSED


def test_without_an_arm_difference_the_contrast_covers_zero():
    results = analyse(labelled_frames(0.25, 0.25), PLAN).results
    (end,) = results["arm_contrast"][RATE]["end_of_study"]
    assert end["ci_low"] < 0 < end["ci_high"]
    assert end["p"] > 0.05
    assert abs(end["estimate"]) < 0.05


def test_a_rate_missing_at_every_follow_up_is_an_error_not_a_fit():
    frames = labelled_frames(0.4, 0.1)
    linked = analyse(frames, {**PLAN, "outcomes": ["who5.percentage"]}).linked
    linked[RATE] = np.where(linked["wave"] > 0, np.nan, linked[RATE])
    result = fit_rate_contrast(linked, RATE)
    assert result["error"] == "0 arm(s) with rates at follow-up; a contrast needs two"


def test_the_report_labels_a_rate_outcome_as_classifier_derived_with_its_validation_note():
    analysis = analyse(labelled_frames(0.40, 0.10), PLAN)
    results = analysis.results
    # as analysis.services adds them (analysis.data.classifier_feature_notes)
    results["classifiers"] = {
        RATE: {
            "classifier": "sycophancy@1",
            "judge": "simulated/simulated-judge",
            "validation": None,
            "summary": "Not yet validated against human coders.",
        }
    }
    html = render_report(results, {"linked": analysis.linked}, {"study": "s"})
    note = html.split(f'data-classifier-outcome="{RATE}">', 1)[1].split("</p>", 1)[0]
    assert note.startswith("Classifier-derived outcome: share of the window&#x27;s units")
    assert "classifier sycophancy@1 (judge simulated/simulated-judge)" in note
    assert "Not yet validated against human coders." in note
    assert "Usage models are not fitted for a classifier-rate outcome" in note
    assert "arm × wave over the follow-up occasions, no baseline" in html
    # a survey score gets no such note
    assert 'data-classifier-outcome="who5.percentage"' not in html
