"""The pure analysis pipeline: a study's frames and its analysis plan → linked table and results.

No Django: :func:`analysis.services.analysis_run_execute` loads the frames from the database
(:func:`analysis.data.load_study_frames`) and renders the report; everything between, features →
linking → models, is here, so the validity benchmark (``benchmarks/analysis_validity.py``) and the
tests push simulated cohorts through exactly the code path a researcher's report comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.arm_contrast import carry_participant_covariates
from analysis.features import daily_features
from analysis.features.classifiers import add_classifier_days, classifier_daily_counts
from analysis.linking import attrition_summary, link_usage_to_outcomes, pre_enrollment_daily
from analysis.multiplicity import label_exploratory
from analysis.plan import run_plan
from analysis.sensitivity import sensitivity_from_frames
from analysis.supplement import table1, usage_window_observed, without_model_supplement

__all__ = ["Analysis", "StudyFrames", "analyse"]

StepCallback = Callable[[str], None]


@dataclass
class StudyFrames:
    """The frames :func:`analysis.data.load_study_frames` builds (shapes: docs/analysis.md)."""

    participants: pd.DataFrame
    messages: pd.DataFrame
    invitations: pd.DataFrame
    responses: pd.DataFrame
    # Conversation-classifier labels (analysis/features/classifiers.py); None: no classifiers.
    classifier_labels: pd.DataFrame | None = None


@dataclass
class Analysis:
    daily: pd.DataFrame
    linked: pd.DataFrame
    attrition: pd.DataFrame
    results: dict[str, Any]


def analyse(
    frames: StudyFrames,
    plan: Mapping[str, Any],
    *,
    text: bool = False,
    step: StepCallback | None = None,
    extras: bool = True,
) -> Analysis:
    """Daily usage features, the linked table and the fitted plan for ``frames``.

    ``step`` is called with "features", "linking" and "models" as each begins (the run's
    progress bar).

    ``extras=False`` is for simulation benchmarks only (``benchmarks/analysis_validity.py``):
    features, linking and the usage models (primary lagged and secondary same-period, with
    their fall-backs, refits and CR2 tests) run exactly as for a report, but the report's
    extras are skipped — sensitivity analyses, Table 1, attrition, the null, arm × time,
    dose-response and arm-contrast models, and each fit's supplement (R², profile intervals,
    diagnostics). They cost most of a replicate and none of them changes the usage
    estimates. Such a run's results carry ``"extras": False``; a report is never rendered
    from one.
    """

    def begin(name: str) -> None:
        if step is not None:
            step(name)

    begin("features")
    daily = daily_features(
        frames.messages,
        frames.participants,
        session_gap_minutes=float(plan.get("session_gap_minutes", 30)),
        text=text,
    )
    if frames.classifier_labels is not None and len(frames.classifier_labels):
        # cls_<key>_rate becomes a window column like any other usage feature.
        daily = add_classifier_days(
            daily, classifier_daily_counts(frames.classifier_labels, frames.participants)
        )
    begin("linking")
    # Imported (pre-enrolment) history is a baseline covariate (<x>_pre), never a window.
    pre_daily = pre_enrollment_daily(
        frames.messages,
        frames.participants,
        session_gap_minutes=float(plan.get("session_gap_minutes", 30)),
    )
    linked = link_usage_to_outcomes(
        daily,
        frames.participants,
        frames.responses,
        window_days=int(plan.get("window_days", 7)),
        predictors=plan.get("predictors") or None,
        invitations=frames.invitations,
        pre_daily=pre_daily,
    )
    linked = carry_participant_covariates(linked, frames.participants)
    linked["usage_window_observed"] = usage_window_observed(linked, frames.participants)
    begin("models")
    if not extras:
        with without_model_supplement():
            results = run_plan(linked, plan, usage_models_only=True)
        results["extras"] = False
        label_exploratory(results)
        return Analysis(daily=daily, linked=linked, attrition=pd.DataFrame(), results=results)
    attrition = attrition_summary(frames.participants, frames.invitations, daily=daily)
    results = run_plan(linked, plan)
    results["attrition"] = attrition.to_dict(orient="records")
    results["table1"] = table1(
        frames.participants,
        daily=daily,
        invitations=frames.invitations,
        linked=linked,
        outcomes=list(plan.get("outcomes", [])),
    )

    # Sensitivity analyses (analysis/sensitivity.py); the grid of missed occasions is linked
    # with exactly the arguments of the call above (and the same covariates), so keep the two
    # in step.
    def link(responses: pd.DataFrame) -> pd.DataFrame:
        return carry_participant_covariates(
            link_usage_to_outcomes(
                daily,
                frames.participants,
                responses,
                window_days=int(plan.get("window_days", 7)),
                predictors=plan.get("predictors") or None,
                invitations=frames.invitations,
                pre_daily=pre_daily,
            ),
            frames.participants,
        )

    results["sensitivity"] = sensitivity_from_frames(
        link, frames.responses, frames.invitations, linked, plan, results
    )
    # Keep last: any p-value a later section added is exploratory unless in the primary family.
    label_exploratory(results)
    return Analysis(daily=daily, linked=linked, attrition=attrition, results=results)
