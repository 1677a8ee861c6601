"""Conversation-classifier rates as OUTCOMES: does an arm change how often the assistant's (or
the participant's) messages carry a classifier's feature?

Pure (no Django). A plan outcome named ``cls_<key>_rate`` (or ``cls_<key>_<level>_rate`` for a
categorical classifier) is the per-window rate of :mod:`analysis.features.classifiers` at each
survey occasion: the same window, the same linked row, as the usage predictors.

Two things differ from a survey score, and both decide the models:

* **No baseline.** The rate is measured on conversations in the study, which happen under the
  participant's arm: the window before the baseline survey starts before enrolment (missing)
  and, when it does not, it is already treated. So there is no pre-randomisation measure and
  the cLDA/ANCOVA of :mod:`analysis.arm_contrast` (both built on a wave-0 baseline) do not
  apply. The arm contrast is an **arm × wave model over the follow-up occasions** (wave > 0):
  ``rate ~ C(wave) + arm × wave cells`` (each arm its own mean at every follow-up wave, no
  baseline adjustment), adjusted for the stratification factors and covariates like the other
  arm contrasts, with a random intercept per participant; the end-of-study contrast is the arm
  difference at the last follow-up wave every arm has rates at.
* **No usage models.** A usage predictor of the same window and the rate come from the same
  conversations (the rate's denominator is the window's labelled messages, which grow with
  ``messages_sent``; a ``cls_*`` predictor would be the outcome itself), and the rate has no lag
  column to form a change score. The lagged and same-period usage models and the dose-response
  are therefore not fitted for a rate outcome; the entry says why
  (:data:`USAGE_MODELS_REFUSED`), and the rate takes no part in the primary usage family.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# The helpers are shared on purpose: the rate contrast must fit, fall back and report exactly as
# the survey-score contrasts do, so the report renders both the same way.
from analysis.arm_contrast import (
    _cell_means_model,
    _end_wave,
    _num,
    _usable_covariates,
    _wave_label,
    arm_contrast_settings,
)

__all__ = [
    "CLASSIFIER_OUTCOME",
    "ESTIMAND",
    "METHOD",
    "USAGE_MODELS_REFUSED",
    "classifier_outcome_entry",
    "classifier_rate_contrasts",
    "fit_rate_contrast",
    "is_classifier_outcome",
    "survey_instruments",
]

GROUPS = "participant"
MIN_GROUPS = 5
# Same shape the protocol schema accepts for a rate outcome (protocol.schema.json).
CLASSIFIER_OUTCOME = re.compile(r"^cls_[a-z0-9_]+_rate$")
METHOD = "arm_by_wave_followup"
ESTIMAND = (
    "Difference between each arm and the reference arm in the model-based mean classifier rate "
    "(share of the window's labelled units with the feature) at the last follow-up wave, over "
    "the follow-up occasions only (a classifier rate has no pre-randomisation baseline), "
    "adjusted for the stratification factors and covariates listed."
)
USAGE_MODELS_REFUSED = (
    "not fitted for a classifier-rate outcome: the rate and the usage predictors come from the "
    "same conversations of the same window, and the rate has no lagged value to form a change; "
    "the arm contrast is the model for this outcome"
)


def is_classifier_outcome(name: str) -> bool:
    return bool(CLASSIFIER_OUTCOME.match(name))


def survey_instruments(outcomes: Sequence[str]) -> set[str] | None:
    """The instruments whose answers make survey occasions for ``outcomes`` (None: all of
    them). A rate outcome names no instrument: its rows are the survey scores' occasions, so a
    plan with rate outcomes only links to every instrument's occasions."""
    instruments = {o.split(".", 1)[0] for o in outcomes if not is_classifier_outcome(o)}
    return instruments or None


def fit_rate_contrast(
    linked: pd.DataFrame,
    outcome: str,
    *,
    reference: str | None = None,
    end_wave: float | None = None,
    covariates: Sequence[str] = (),
    strata: Sequence[str] = (),
    random_effects: str = "~1",
) -> dict[str, Any]:
    """The arm × wave contrast of a classifier rate over the follow-up waves (JSON-able dict,
    with ``"error"`` when not estimable). Same keys as
    :func:`analysis.arm_contrast.fit_arm_contrast`, plus ``classifier_outcome: True``."""
    head: dict[str, Any] = {
        "method": METHOD,
        "estimand": ESTIMAND,
        "outcome": outcome,
        "classifier_outcome": True,
    }
    for column in (outcome, "arm", "wave", GROUPS):
        if column not in linked.columns:
            return {**head, "error": f"no column {column!r} in the linked data"}
    frame = linked.dropna(subset=[GROUPS, "arm", "wave", outcome]).copy()
    frame["wave"] = pd.to_numeric(frame["wave"]).astype(float)
    # Follow-up occasions only: a rate at wave 0 (if its window was after enrolment) is already
    # under the arm, so it is not a baseline, and mixing it in would not make one.
    frame = frame[frame["wave"] > 0]
    wanted = list(dict.fromkeys([*strata, *covariates]))
    usable, dropped = _usable_covariates(frame, wanted)
    frame = frame.dropna(subset=usable)
    usable, more_dropped = _usable_covariates(frame, usable)
    dropped += more_dropped
    arms = sorted(str(a) for a in frame["arm"].unique())
    frame["arm"] = frame["arm"].astype(str)
    head.update(
        {
            "covariates": [c for c in usable if c not in strata],
            "strata": [c for c in usable if c in strata],
            "dropped_covariates": dropped,
        }
    )
    if len(arms) < 2:
        return {
            **head,
            "error": f"{len(arms)} arm(s) with rates at follow-up; a contrast needs two",
        }
    if reference is None:
        reference = arms[0]
    if reference not in arms:
        return {**head, "error": f"reference arm {reference!r} has no rates (arms: {arms})"}
    others = [a for a in arms if a != reference]
    head.update({"reference": reference, "arms": [reference, *others]})

    follow = sorted(frame["wave"].unique())
    kept = [w for w in follow if frame.loc[frame["wave"] == w, "arm"].nunique() == len(arms)]
    skipped = [_wave_label(w) for w in follow if w not in kept]
    if not kept:
        return {**head, "error": "no follow-up wave with rates from every arm"}
    end, error = _end_wave(kept, end_wave, "rates from every arm")
    if error:
        return {**head, "error": error}
    frame = frame[frame["wave"].isin(kept)].reset_index(drop=True)
    n_groups = int(frame[GROUPS].nunique())
    if n_groups < MIN_GROUPS:
        return {
            **head,
            "error": f"too few participants with rates ({n_groups} < {MIN_GROUPS})",
        }
    # Cell means without a baseline: the intercept is the reference arm at the first follow-up
    # wave, each later wave its own shift, and each arm × wave cell one arm difference.
    return _cell_means_model(
        frame,
        outcome,
        head={**head, "end_wave": _num(end), "waves_skipped": skipped},
        reference=reference,
        others=others,
        waves=kept,
        own_mean_waves=kept[1:],
        mean_waves=kept,
        leading_terms=[],
        covariates=usable,
        random_effects=random_effects,
        end=end,
    )


def classifier_rate_contrasts(linked: pd.DataFrame, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Arm contrasts of the plan's classifier-rate outcomes (``{}``: none, one arm, or
    ``arm_contrast.method: none``); they replace what :func:`arm_contrasts` gives those names."""
    settings = arm_contrast_settings(plan)
    rates = [o for o in plan.get("outcomes", []) if is_classifier_outcome(o)]
    if not rates or settings["method"] == "none" or "arm" not in linked.columns:
        return {}
    if linked["arm"].dropna().nunique() < 2:
        return {}
    strata = (
        sorted(c for c in linked.columns if c.startswith("stratum."))
        if settings["adjust_strata"]
        else []
    )
    covariates = [c for c in plan.get("covariates", []) or [] if c not in strata]
    out: dict[str, Any] = {}
    for outcome in rates:
        try:
            out[outcome] = fit_rate_contrast(
                linked,
                outcome,
                reference=settings["reference"],
                end_wave=settings["end_wave"],
                covariates=covariates,
                strata=strata,
                random_effects=settings["random_effects"],
            )
        except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            out[outcome] = {
                "method": METHOD,
                "estimand": ESTIMAND,
                "outcome": outcome,
                "classifier_outcome": True,
                "error": str(exc),
            }
    return out


def classifier_outcome_entry(
    linked: pd.DataFrame, outcome: str, plan: Mapping[str, Any], *, arm_by_time: bool
) -> dict[str, Any]:
    """``results["outcomes"][<rate>]``: the usage models refused with the reason; the null model
    (the rate's intraclass correlation) and, when asked, the plan's ``wave * C(arm)`` model."""
    # analysis.plan imports this module inside run_plan; importing it here at call time keeps
    # the two free of an import cycle.
    from analysis.plan import PRIMARY_MODEL, SECONDARY_MODEL, _fit, model_formulas

    formulas = model_formulas(plan, outcome)
    refused = {"error": USAGE_MODELS_REFUSED, "not_applicable": True}
    entry: dict[str, Any] = {
        "n_rows": int(linked[outcome].notna().sum()) if outcome in linked else 0,
        "classifier_outcome": True,
        PRIMARY_MODEL: dict(refused),
        SECONDARY_MODEL: dict(refused),
        "null_model": _fit(linked, formulas["null"], "~1"),
    }
    if arm_by_time:
        re_formula = plan.get("random_effects") or "~1"
        entry["arm_time_model"] = _fit(linked, formulas["arm_time"], re_formula)
    return entry
