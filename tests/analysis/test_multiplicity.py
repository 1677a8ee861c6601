"""The primary family: its correction, its adjusted p-values, and the exploratory labels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.multiplicity import apply_multiplicity, label_exploratory
from analysis.plan import run_plan
from analysis.stats.multiple import bh_adjust, bonferroni_adjust, holm_adjust

OUTCOMES = ["who5.percentage", "ucla3.total"]
PLAN = {
    "outcomes": OUTCOMES,
    "predictors": ["messages_sent"],
    "covariates": [],
    "random_effects": "~1",
    "arm_by_time": True,
}


def linked_table(n: int = 40, waves: int = 4, seed: int = 1) -> pd.DataFrame:
    """Two arms, a lagged within-person usage effect on WHO-5 and an arm effect on UCLA-3.

    The lags (``<c>_lag``, previous occasion) are added as the linking step adds them, so the
    primary (lagged) model can be fitted.
    """
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), waves + 1)
    wave = np.tile(np.arange(waves + 1, dtype=float), n)
    arm = np.where(pid % 2 == 1, "treat", "control")
    usage = rng.poisson(10, size=pid.size).astype(float)
    frame = pd.DataFrame(
        {"participant": [f"p{i:02d}" for i in pid], "arm": arm, "wave": wave, "occasion": wave}
    ).assign(messages_sent=usage)
    mean = frame.groupby("participant")["messages_sent"].transform("mean")
    frame["messages_sent_between"] = mean
    frame["messages_sent_within"] = usage - mean
    frame["messages_sent_lag"] = frame.groupby("participant")["messages_sent"].shift(1)
    previous = (frame["messages_sent_lag"] - mean).fillna(0)
    person = rng.normal(0, 5, n)[pid]
    frame["who5.percentage"] = 50 + person + 0.8 * previous + rng.normal(0, 4, pid.size)
    treat = (arm == "treat") * wave * 0.6
    frame["ucla3.total"] = 6 + 0.3 * person + treat + rng.normal(0, 1, pid.size)
    for column in OUTCOMES:
        frame[f"{column}_lag"] = frame.groupby("participant")[column].shift(1)
    return frame


def test_holm_and_bonferroni_adjust_as_published():
    p = [0.01, 0.04, 0.03, np.nan]
    # Holm: sorted 0.01, 0.03, 0.04 times 3, 2, 1, then a running maximum
    assert np.allclose(holm_adjust(p)[:3], [0.03, 0.06, 0.06])
    assert np.isnan(holm_adjust(p)[3])
    assert np.allclose(bonferroni_adjust(p)[:3], [0.03, 0.12, 0.09])
    # Holm never exceeds Bonferroni and is never below the raw p
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = rng.uniform(0, 0.2, size=6)
        holm = holm_adjust(values)
        assert np.all(holm <= bonferroni_adjust(values) + 1e-15)
        assert np.all(holm >= values)


def test_the_default_family_is_the_primary_term_across_outcomes_with_holm():
    # when
    results = run_plan(linked_table(), PLAN)
    # then: two tests of the primary (lagged) term, adjusted by Holm, reported as
    # results["primary"]["q"]
    model_key, term = results["primary"]["model"], results["primary"]["term"]
    assert (model_key, term) == ("lagged_model", "messages_sent_lag_within")
    multi = results["multiplicity"]
    assert multi["correction"] == "holm" and multi["method"] == "Holm"
    assert multi["error_rate"] == "family-wise error rate"
    assert [(r["outcome"], r["term"]) for r in multi["family"]] == [
        ("who5.percentage", term),
        ("ucla3.total", term),
    ]
    assert all(r["p"] is not None for r in multi["family"])
    p = [results["primary"]["p"][o] for o in OUTCOMES]
    expected = holm_adjust(p)
    assert [results["primary"]["q"][o] for o in OUTCOMES] == pytest.approx(list(expected))
    assert results["primary"]["method"] == "Holm"
    assert set(results["primary"]) >= {"term", "p", "q", "method", "p_method"}
    # and the primary term carries its label and adjusted p, every other p is exploratory
    who5 = results["outcomes"]["who5.percentage"]
    within = who5[model_key]["fixed"][term]
    assert within["family"] == "primary"
    assert within["p_adjusted"] == pytest.approx(expected[0])
    assert who5[model_key]["fixed"]["messages_sent_lag_between"]["family"] == "exploratory"
    # the same-period association is secondary: its within term is exploratory too
    association = who5["association_model"]["fixed"]["messages_sent_within"]
    assert association["family"] == "exploratory" and "p_adjusted" not in association
    assert all(v["family"] == "exploratory" for v in who5["arm_time_model"]["fixed"].values())
    contrast = results["arm_contrast"]["who5.percentage"]
    assert all(d["family"] == "exploratory" for d in contrast["differences"])
    assert all(m["family"] == "exploratory" for m in contrast["means"])
    json.dumps(results, allow_nan=False)


def test_a_declared_family_can_hold_the_end_of_study_arm_contrast():
    plan = {
        **PLAN,
        "multiplicity": {
            "outcomes": ["ucla3.total"],
            "terms": ["arm_contrast", "messages_sent_lag_within"],
            "correction": "bonferroni",
        },
    }
    results = run_plan(linked_table(), plan)
    family = results["multiplicity"]["family"]
    assert [(r["term"], r.get("arm")) for r in family] == [
        ("arm_contrast", "treat"),
        ("messages_sent_lag_within", None),
    ]
    raw = [r["p"] for r in family]
    assert [r["p_adjusted"] for r in family] == pytest.approx(list(bonferroni_adjust(raw)))
    (end,) = results["arm_contrast"]["ucla3.total"]["end_of_study"]
    assert end["family"] == "primary" and end["p_adjusted"] == family[0]["p_adjusted"]
    # WHO-5 is outside the family now: its primary term is exploratory and has no q
    who5 = results["outcomes"]["who5.percentage"][results["primary"]["model"]]["fixed"]
    assert who5["messages_sent_lag_within"]["family"] == "exploratory"
    assert results["primary"]["q"]["who5.percentage"] is None
    assert results["primary"]["q"]["ucla3.total"] == family[1]["p_adjusted"]


def test_benjamini_hochberg_is_available_and_labelled_as_fdr():
    plan = {**PLAN, "multiplicity": {"correction": "benjamini-hochberg"}}
    results = run_plan(linked_table(), plan)
    p = [results["primary"]["p"][o] for o in OUTCOMES]
    assert all(value is not None for value in p)
    assert [results["primary"]["q"][o] for o in OUTCOMES] == pytest.approx(list(bh_adjust(p)))
    assert results["multiplicity"]["error_rate"] == "false discovery rate"


def test_a_family_member_that_was_not_estimated_is_listed_with_the_reason():
    plan = {**PLAN, "multiplicity": {"terms": ["no_such_term"]}}
    results = run_plan(linked_table(), plan)
    (first, _) = results["multiplicity"]["family"]
    assert first["p"] is None and first["p_adjusted"] is None
    assert first["missing"] == "no term 'no_such_term' in lagged_model"


def test_an_unknown_correction_is_refused_by_name():
    with pytest.raises(ValueError) as info:
        apply_multiplicity({"plan": {"outcomes": []}}, {"multiplicity": {"correction": "sidak"}})
    assert str(info.value) == (
        "multiplicity.correction must be one of holm, bonferroni, benjamini-hochberg, not 'sidak'"
    )


def test_a_section_added_after_the_plan_is_labelled_exploratory_too():
    # given: results with a later section holding p-values (as a sensitivity analysis adds)
    results = run_plan(linked_table(), PLAN)
    results["sensitivity"] = {"who5.percentage": {"fixed": {"x": {"p": 0.01}}}}
    # when
    label_exploratory(results)
    # then
    assert results["sensitivity"]["who5.percentage"]["fixed"]["x"]["family"] == "exploratory"
    fixed = results["outcomes"]["who5.percentage"][results["primary"]["model"]]["fixed"]
    assert fixed[results["primary"]["term"]]["family"] == "primary"
