"""Running a protocol's analysis plan over the linked table: mixed models → a JSON-able dict.

Pure (no Django): takes the table built by :func:`analysis.linking.link_usage_to_outcomes` and
the protocol's ``analysis`` section, fits with :mod:`analysis.stats`, and returns plain dicts and
lists (floats, ints, strings, None) that can be stored in a JSONField as they are.

For every outcome ``y`` in ``plan["outcomes"]`` (estimands in plain words: docs/analysis.md):

* **lagged model** (``lagged_model``, the PRIMARY usage model): usage in the window before
  the previous occasion (t − 1) and the outcome's change from t − 1 to t,
  ``y_change ~ x1_lag_within + x1_lag_between + … (+ covariates) + time`` (default
  ``lagged_outcome: change``), or with ``lagged_outcome: adjust`` the outcome at t adjusted for
  the outcome at t − 1 split into person mean and deviation; with ``previous_usage: adjust``
  the change model also has ``x1_lag2_within``, the usage before t − 2 that acted on
  y(t − 1) (:func:`_previous_usage_terms`; off by default). ``x_lag_within`` is the lagged
  within-person effect; its tests are cluster-robust (CR2, :func:`cluster_robust`), the
  model-based ones are kept in ``fixed_model``;
* **association model** (``association_model``, SECONDARY): the same-period association
  ``y ~ x1_within + x1_between + … (+ covariates) + time``. Its window overlaps the recall
  period of the questionnaire, so it cannot tell use → mood from mood → use: it is labelled an
  association everywhere;
* **arm × time model** (``arm_by_time`` and an ``arm`` column with ≥ 2 arms):
  ``y ~ wave * C(arm)``, random effects ``plan["random_effects"]``;
* **null model** ``y ~ 1`` for the outcome's intraclass correlation;
* **dose-response**: outcome mean and 95% CI by quartile of the first predictor, participants
  averaged first (:func:`analysis.stats.models.dose_response`); windows before enrolment are
  missing, so the empty baseline never fills the lowest bin.

Usage terms are built at fit time over the rows that actually enter the model (complete in
the outcome, usage, lagged outcome, covariates and time): the usage is transformed
(``usage_transform``), then split into the observed person mean over those rows
(``_between``) and the deviation from it (``_within``). Time is ``C(wave)`` (default),
linear weeks since enrolment at completion, or a restricted cubic spline of those weeks
(``time``). A random slope on the primary within term is added when the data identify it
(``random_slope``, default true); a singular fit is refitted with a simpler random-effect
structure when ``refit_singular`` (default true) and the model records ``refit_from`` and
``refit_reason``.

Every p-value is a Satterthwaite t test (:mod:`analysis.stats.satterthwaite`; the method's
name is in each model's ``"p_method"`` and in ``results["primary"]["p_method"]``).
Benjamini–Hochberg q-values are computed across outcomes for the first predictor's lagged
within-person p-value (``results["primary"]``; ``results["primary"]["model"]`` names the model
key). A model that cannot be fitted is reported with ``"error"`` (the reason) instead of
stopping the run. A random-effect structure the data cannot identify (lme4's checks,
:class:`~analysis.stats.mixedlm.UnidentifiableModelError`) is never fitted: it is listed under
``"not_fitted"`` with the reason, and the model falls back to a simpler identifiable one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.linking import COUNT_COLUMNS
from analysis.multiplicity import apply_multiplicity
from analysis.stats.mixedlm import P_METHOD, MixedLMResult, UnidentifiableModelError, fit_mixedlm
from analysis.stats.models import dose_response
from analysis.stats.multiple import bh_adjust
from analysis.stats.robust import mixed_cluster_robust
from analysis.supplement import DOSE_RULE, dose_rows, frame_exclusions, model_supplement

__all__ = [
    "MIN_GROUPS",
    "PRIMARY_MODEL",
    "cluster_robust",
    "fit_summary",
    "model_formulas",
    "model_frame",
    "plan_options",
    "run_plan",
]

GROUPS = "participant"
# Below this many participants a variance component cannot be estimated with any meaning, so
# the model is skipped (the Satterthwaite df would be tiny and the test nearly powerless).
MIN_GROUPS = 5
PRIMARY_MODEL = "lagged_model"
SECONDARY_MODEL = "association_model"

TIME_MODELS = ("categorical", "linear", "spline")
# How the lagged model uses the outcome at t − 1: "change" models y(t) − y(t−1), "adjust" puts
# y(t−1) (person mean and deviation) on the right-hand side. docs/analysis.md says why the
# default is what it is (the validity benchmark under reverse causation and recall overlap).
LAGGED_OUTCOMES = ("change", "adjust")
DEFAULT_LAGGED_OUTCOME = "change"
# Whether the change model also adjusts for usage before occasion t − 2 (the usage that acted on
# y(t − 1); _previous_usage_terms says why). Off by default: under mood-driven use that window
# lies inside only the previous survey's recall, so the adjustment brings the reverse causation
# the change cancels back in (validity benchmark, reverse_null: rejection 0.095 with it, 0.075
# without); without it a real lagged effect is overstated by 10-30% (docs/analysis.md).
PREVIOUS_USAGE = ("ignore", "adjust")
DEFAULT_PREVIOUS_USAGE = "ignore"
TRANSFORMS = ("log1p", "rank", "none")
# log1p is for right-skewed non-negative counts and rates; shares and ratios stay as they are.
LOG_COLUMNS = frozenset(COUNT_COLUMNS) - {"share_days_active"} | {"mean_session_minutes"}
# Restricted cubic spline knots (Harrell 2015, Regression Modeling Strategies, 2.4.5): the
# 10th, 50th and 90th percentiles of the modelled rows' weeks give one non-linear column.
SPLINE_QUANTILES = (0.1, 0.5, 0.9)
# A random-effect variance counts as zero (singular fit) below this fraction of the residual SD.
SINGULAR_TOLERANCE = 1e-4

LABELS = {
    PRIMARY_MODEL: (
        "Lagged within-person model (primary): usage in the window before the previous survey "
        "and the outcome at this survey relative to the previous survey's"
    ),
    SECONDARY_MODEL: (
        "Same-period association (secondary): usage in the window before this survey and the "
        "outcome at this survey; an association, not an effect: low mood driving use produces "
        "it as well, and only the lagged model's estimate survives that (docs/analysis.md)"
    ),
}
ESTIMANDS = {
    PRIMARY_MODEL: "lagged within-person effect",
    SECONDARY_MODEL: "same-period within-person association",
}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def plan_options(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The model options of ``plan`` with their defaults; a bad value raises naming the key."""
    time = plan.get("time", "categorical")
    if time not in TIME_MODELS:
        raise ValueError(f"analysis.time must be one of {', '.join(TIME_MODELS)}, not {time!r}")
    transform = plan.get("usage_transform", "log1p")
    if transform not in TRANSFORMS:
        raise ValueError(
            f"analysis.usage_transform must be one of {', '.join(TRANSFORMS)}, not {transform!r}"
        )
    lagged_outcome = plan.get("lagged_outcome", DEFAULT_LAGGED_OUTCOME)
    if lagged_outcome not in LAGGED_OUTCOMES:
        raise ValueError(
            f"analysis.lagged_outcome must be one of {', '.join(LAGGED_OUTCOMES)}, "
            f"not {lagged_outcome!r}"
        )
    previous = plan.get("previous_usage", DEFAULT_PREVIOUS_USAGE)
    if previous not in PREVIOUS_USAGE:
        raise ValueError(
            f"analysis.previous_usage must be one of {', '.join(PREVIOUS_USAGE)}, not {previous!r}"
        )
    options = {
        "time": time,
        "usage_transform": transform,
        "lagged_outcome": lagged_outcome,
        "previous_usage": previous,
    }
    for key in ("random_slope", "refit_singular"):
        value = plan.get(key, True)
        if not isinstance(value, bool):
            raise ValueError(f"analysis.{key} must be true or false, not {value!r}")
        options[key] = value
    return options


def _terms(names: Sequence[str], lagged: bool) -> list[str]:
    suffix = "_lag" if lagged else ""
    terms = []
    for name in names:
        terms += [f"{name}{suffix}_within", f"{name}{suffix}_between"]
    return terms


def _time_terms(time: str) -> list[str]:
    if time == "categorical":
        return ["C(wave)"]
    if time == "linear":
        return ["weeks"]
    return ["weeks", "weeks_rcs1"]


def model_formulas(plan: Mapping[str, Any], outcome: str) -> dict[str, str]:
    """The fixed-effects formulas the plan implies for ``outcome`` (for the report, too)."""
    options = plan_options(plan)
    predictors = list(plan.get("predictors", []))
    covariates = list(plan.get("covariates", []) or [])
    time = _time_terms(options["time"])
    if options["lagged_outcome"] == "change":
        # The usage before t - 2 acted on y(t - 1) (_previous_usage_terms: why), if asked.
        previous = options["previous_usage"] == "adjust"
        response, y_lag = f"{outcome}_change", [f"{p}_lag2_within" for p in predictors if previous]
    else:
        response, y_lag = outcome, [f"{outcome}_lag_within", f"{outcome}_lag_between"]
    lagged = [*_terms(predictors, True), *y_lag, *covariates, *time]
    same = [*_terms(predictors, False), *covariates, *time]
    return {
        "lagged": f"{response} ~ " + " + ".join(lagged),
        "association": f"{outcome} ~ " + " + ".join(same),
        "arm_time": f"{outcome} ~ wave * C(arm)",
        "null": f"{outcome} ~ 1",
    }


def fit_summary(result: MixedLMResult) -> dict[str, Any]:
    """A fit as a JSON-able dict: fixed effects, variance components, ICC, sizes, convergence."""
    data = result.to_dict()
    return {
        "formula": result.formula,
        "re_formula": result.re_formula,
        "method": data["method"],
        "p_method": data["p_method"],
        "fixed": data["fixed"],
        "variance_components": {
            "random_sd": data["random"]["sd"],
            "random_corr": data["random"]["corr"],
            "residual_sd": data["residual_sd"],
        },
        "icc": data["icc"],
        "loglik": data["loglik"],
        "aic": data["aic"],
        "n_obs": result.n_obs,
        "n_groups": result.n_groups,
        "n_dropped": result.n_dropped,
        "converged": bool(result.converged),
        "singular": bool(result.singular),
        **model_supplement(result),  # R², effect sizes, VC CIs, diagnostics (analysis/supplement)
    }


def _columns_of(formula: str) -> list[str]:
    text = formula.replace("~", "+").replace("*", "+").replace(":", "+")
    names = []
    for part in text.split("+"):
        part = part.strip()
        if part.startswith("C(") and part.endswith(")"):
            part = part[2:-1]
        if part and part not in ("1", "0"):
            names.append(part)
    return names


def _transform(values: pd.Series, how: str, column: str) -> pd.Series:
    """Usage on the scale the model uses (the raw scale is in the linked table)."""
    values = pd.to_numeric(values, errors="coerce").astype(float)
    if how == "log1p" and column in LOG_COLUMNS:
        return np.log1p(values.clip(lower=0))
    if how == "rank":
        # Percentile rank over the rows that have the value: robust to a few heavy users.
        return values.rank(pct=True)
    return values


def _rcs(weeks: pd.Series) -> tuple[pd.Series, list[float]]:
    """The one non-linear column of a 3-knot restricted cubic spline of ``weeks``."""
    knots = [float(k) for k in np.quantile(weeks.to_numpy(dtype=float), SPLINE_QUANTILES)]
    k1, k2, k3 = knots
    if not k1 < k2 < k3:
        raise ValueError("too few distinct completion times for a spline of time")
    x = weeks.to_numpy(dtype=float)

    def cube(v: np.ndarray) -> np.ndarray:
        return np.clip(v, 0, None) ** 3

    # Harrell's parametrisation, scaled by (k3 - k1)^2 so the column is on the scale of weeks.
    term = (
        cube(x - k1) - cube(x - k2) * (k3 - k1) / (k3 - k2) + cube(x - k3) * (k2 - k1) / (k3 - k2)
    )
    return pd.Series(term / (k3 - k1) ** 2, index=weeks.index), knots


def model_frame(
    linked: pd.DataFrame,
    outcome: str,
    plan: Mapping[str, Any],
    *,
    lagged: bool,
) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """The rows a usage model uses, its terms computed over exactly those rows, and its formula.

    Returns ``(frame, formula, info)``; ``info`` has ``excluded`` (rows with the outcome that
    were left out, by first reason), ``time_model``, ``usage_transform``, ``centring`` and
    (for splines) ``spline_knots``. Raises ``ValueError`` naming a missing column.
    """
    options = plan_options(plan)
    predictors = list(plan.get("predictors", []))
    covariates = list(plan.get("covariates", []) or [])
    suffix = "_lag" if lagged else ""
    sources = [f"{p}{suffix}" for p in predictors]
    y_lag = f"{outcome}_lag"
    time_source = "wave" if options["time"] == "categorical" else "weeks"
    needed = [outcome, *sources, *covariates, time_source, GROUPS]
    if lagged:
        needed.append(y_lag)
    for column in needed:
        if column not in linked.columns:
            raise ValueError(f"no column {column!r}")
    frame = linked.copy()
    for predictor, source in zip(predictors, sources, strict=True):
        frame[source] = _transform(frame[source], options["usage_transform"], predictor)
    # Every row's transformed usage, before rows are dropped: the change model looks up the
    # usage one occasion further back (_previous_usage_terms) on rows the model itself drops.
    linked_usage = frame

    # Why each row with an outcome is left out, first reason only (the report's exclusions).
    has_outcome = frame[outcome].notna() & frame[GROUPS].notna()
    remaining = has_outcome.copy()
    excluded: dict[str, int] = {}

    def drop(reason: str, missing: pd.Series) -> None:
        nonlocal remaining
        hit = remaining & missing
        if hit.any():
            excluded[reason] = excluded.get(reason, 0) + int(hit.sum())
        remaining &= ~missing

    if lagged:
        drop("previous occasion not answered", frame[y_lag].isna())
    before = f"window_before_enrollment{suffix}"
    if before in frame.columns:
        drop("usage window before enrolment", frame[before].fillna(0).astype(bool))
    for source in sources:
        drop(f"no {source}", frame[source].isna())
    for covariate in covariates:
        drop(f"no {covariate}", frame[covariate].isna())
    drop(f"no {time_source}", frame[time_source].isna())
    frame = frame.loc[remaining].copy()

    info: dict[str, Any] = {
        "time_model": options["time"],
        "lagged_outcome": options["lagged_outcome"] if lagged else None,
        "usage_transform": options["usage_transform"],
        "centring": (
            f"observed person means over the {len(frame)} rows of this model (Lüdtke et al. 2008: "
            "observed, not latent, means)"
        ),
        "n_available": int(has_outcome.sum()),
        "excluded": excluded,
    }
    terms: list[str] = []
    for source in sources:
        # Centred on the rows that enter the model: a person mean that included rows the model
        # drops (e.g. an empty baseline) would shift the within part by something unrelated.
        mean = frame.groupby(GROUPS, sort=False)[source].transform("mean")
        frame[f"{source}_between"] = mean
        frame[f"{source}_within"] = frame[source] - mean
        terms += [f"{source}_within", f"{source}_between"]
    if lagged and options["lagged_outcome"] == "change":
        if options["previous_usage"] == "adjust":
            terms += _previous_usage_terms(frame, linked_usage, sources, info)
        else:
            info["previous_usage"] = "not adjusted (previous_usage: ignore, the default)"
    if lagged:
        # The previous outcome split like usage (the observed-means version of the
        # random-intercept cross-lagged panel model, Hamaker et al. 2015). The raw previous
        # outcome would stand in for the person's stable level, the random intercept collapses,
        # and lagged usage, which tracks the transient part of the previous mood when mood
        # drives use, picks up that level: a spurious "effect" (docs/analysis.md).
        if options["lagged_outcome"] == "change":
            # The change since the previous survey: a mood episode that falls inside both
            # surveys' two-week recall (and drove the lagged usage) cancels out of it.
            frame[f"{outcome}_change"] = frame[outcome] - frame[y_lag]
        else:
            mean = frame.groupby(GROUPS, sort=False)[y_lag].transform("mean")
            frame[f"{y_lag}_within"] = frame[y_lag] - mean
            frame[f"{y_lag}_between"] = mean
            terms += [f"{y_lag}_within", f"{y_lag}_between"]
    terms += covariates
    if options["time"] == "spline" and len(frame):
        frame["weeks_rcs1"], info["spline_knots"] = _rcs(frame["weeks"])
    terms += _time_terms(options["time"])
    change = lagged and options["lagged_outcome"] == "change"
    response = f"{outcome}_change" if change else outcome
    return frame, f"{response} ~ " + " + ".join(terms), info


def _previous_usage_terms(
    frame: pd.DataFrame, linked_usage: pd.DataFrame, sources: Sequence[str], info: dict[str, Any]
) -> list[str]:
    """``<x>_lag2_within``: the usage that, by the same estimand, acted on y(t − 1).

    Why: the lagged estimand says usage in the window before occasion t − 1 moves the outcome
    at t, so y(t − 1) carries the effect of the usage before t − 2 and the change
    y(t) − y(t − 1) carries minus that effect. Left out, that term is absorbed by the lagged
    usage: person-mean centring over a person's 3-5 modelled rows makes successive deviations
    negatively correlated (a deviation above the mean at one occasion implies deviations below
    it elsewhere), so the omitted −β·x(t − 2) deviation loaded positively on x(t − 1) and the
    estimate came out 10-30% too large in every planted-effect scenario of the validity
    benchmark (on basic_effect, paired with its null: 0.115 for a planted 0.100; with this
    term 0.1015; docs/analysis.md). Only with ``previous_usage: adjust``: when low mood drives
    use, the window before t − 2 lies inside the recall of survey t − 1 but not of survey t,
    so this term carries the mood the change otherwise cancels, and the null is rejected too
    often (benchmark reverse_null 0.095 against 0.075 without it).

    The term is the previous occasion's lagged usage (same transform), centred on the person's
    mean over the modelled rows that have it. Where it is not observed (the previous occasion's
    window began before enrolment — the second follow-up of a baseline-at-enrolment schedule,
    whose y(t − 1) carries no usage effect — or the occasion before it was not answered) the
    deviation is 0: such a row tells nothing about the adjustment, and the time term absorbs
    the level. Without an ``occasion`` column (hand-built tables) or with no row that has the
    term, nothing is added and ``info["previous_usage"]`` says so.
    """
    if "occasion" not in linked_usage.columns or not sources:
        info["previous_usage"] = "not adjusted (no occasion index in the linked table)"
        return []
    before = linked_usage[[GROUPS, "occasion", *sources]].dropna(subset=[GROUPS, "occasion"])
    before = before.drop_duplicates([GROUPS, "occasion"], keep="last")
    before = before.assign(occasion=before["occasion"] + 1).rename(
        columns={s: f"{s}2" for s in sources}
    )
    merged = frame[[GROUPS, "occasion"]].merge(before, on=[GROUPS, "occasion"], how="left")
    terms: list[str] = []
    for source in sources:
        values = pd.Series(merged[f"{source}2"].to_numpy(dtype=float), index=frame.index)
        mean = values.groupby(frame[GROUPS], sort=False).transform("mean")
        within = (values - mean).fillna(0.0)
        if not (within.abs() > 0).any():
            continue
        frame[f"{source}2_within"] = within
        terms.append(f"{source}2_within")
    observed = int(merged[[f"{s}2" for s in sources]].notna().all(axis=1).sum())
    info["previous_usage"] = (
        f"adjusted for usage before occasion t - 2 ({', '.join(terms)}; observed on {observed} "
        f"of {len(frame)} rows, deviation 0 elsewhere)"
        if terms
        else "not adjusted (no modelled row has usage before occasion t - 2)"
    )
    return terms


ROBUST_P_METHOD = "cluster-robust t (CR2, Bell-McCaffrey df)"
# What runs stored before the Bell-McCaffrey df was used say (the report still explains them).
ROBUST_P_METHOD_G1 = "cluster-robust t (CR2, df = participants - 1)"


def cluster_robust(result: MixedLMResult, data: pd.DataFrame) -> dict[str, dict[str, float]]:
    """CR2 cluster-robust tests of the fixed effects of a fitted model, clustered by participant.

    Why: the lagged model's residuals are not what its random effects describe (successive
    changes share a survey and are negatively correlated; a person-centred previous outcome
    has the dynamic-panel "Nickell" term), so the model-based SEs of the usage terms come out
    too small. The sandwich only assumes people are independent. The CR2 adjustment
    (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018) uses the fitted covariance of each
    person as the working model (:func:`analysis.stats.robust.mixed_cluster_robust`).

    Tests use a t with the Bell-McCaffrey (Satterthwaite) df of the CR2 variance, not
    participants − 1: usage counts are right-skewed, so a few heavy users carry most of the
    within-person variation of the usage term, the sandwich then rests on few effective
    clusters, and with participants − 1 df the validity benchmark rejected true nulls 7-9%
    of the time at 100 participants (5-6% with these df; docs/analysis.md). The
    Bell-McCaffrey df shrink with that concentration, as clubSandwich's
    ``coef_test(test = "Satterthwaite")`` does.
    """
    robust = mixed_cluster_robust(result, data)
    return {
        name: {
            "estimate": c.estimate,
            "se": c.se,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "df": c.df,
            "t": c.t,
            "p": c.p,
        }
        for name, c in robust.coefficients.items()
    }


def _zero_components(result: MixedLMResult) -> list[str]:
    """Random effects whose SD is (numerically) zero relative to the residual SD."""
    scale = max(result.residual_sd, 1e-12)
    return [n for n, sd in result.random_sd.items() if sd <= SINGULAR_TOLERANCE * scale]


def _fit(
    data: pd.DataFrame,
    formula: str,
    re_formula: str | Sequence[str],
    *,
    refit_singular: bool = False,
    robust: bool = False,
) -> dict[str, Any]:
    """Fit one model, trying random-effect structures from the richest to the simplest.

    ``re_formula`` is one structure or an ordered list (the first is the one asked for; the
    others are simpler fall-backs, ending at ``~1``). An unidentifiable structure is listed in
    ``not_fitted``; an engine failure falls back with ``fallback_from``/``fallback_reason``; a
    singular fit, when ``refit_singular``, is refitted with the next structure and the result
    says ``refit_from``/``refit_reason``. Failures are returned as ``{"error": ...}``.
    """
    attempts = [re_formula] if isinstance(re_formula, str) else list(re_formula)
    if "~1" not in [a.replace(" ", "") for a in attempts]:
        attempts.append("~1")
    requested = attempts[0]
    needed = _columns_of(formula) + [c for a in attempts[:1] for c in _columns_of(a)]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        return {"formula": formula, "re_formula": requested, "error": f"no column {missing[0]!r}"}
    complete = data.dropna(subset=[*_columns_of(formula), GROUPS])
    n_groups = int(complete[GROUPS].nunique())
    if n_groups < MIN_GROUPS:
        return {
            "formula": formula,
            "re_formula": requested,
            "error": f"too few participants with complete data ({n_groups} < {MIN_GROUPS})",
            "n_obs": len(complete),
            "n_groups": n_groups,
        }
    reasons: list[str] = []
    not_fitted: list[dict[str, str]] = []
    singular: tuple[str, str] | None = None  # the first singular structure and why
    last_singular: dict[str, Any] | None = None
    for index, re_f in enumerate(attempts):
        try:
            result = fit_mixedlm(formula, data, GROUPS, re_f)
        except UnidentifiableModelError as exc:
            # Refused, as lme4 refuses it: recorded as its own row, never as a fit.
            not_fitted.append({"re_formula": re_f, "reason": str(exc)})
            reasons.append(f"{re_f}: {exc}")
            continue
        except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            reasons.append(f"{re_f}: {exc}")
            continue
        summary = fit_summary(result)
        if robust:
            _use_robust(summary, result, data)
        if result.singular and refit_singular and index < len(attempts) - 1:
            # A variance at zero (or a correlation at ±1) means the data do not support the
            # structure; its SEs are unreliable, so the simpler structure is what we report.
            zero = _zero_components(result)
            what = (
                f"random-effect SD of {', '.join(zero)} at zero"
                if zero
                else ("a random-effect correlation at ±1")
            )
            if singular is None:
                singular = (re_f, f"singular fit with {re_f.strip()}: {what}")
            last_singular = summary
            continue
        return _annotate(summary, requested, reasons, not_fitted, singular)
    if last_singular is not None:
        # Every simpler structure failed: keep the singular fit, flagged as such.
        return _annotate(last_singular, requested, reasons, not_fitted, None)
    failed: dict[str, Any] = {"formula": formula, "re_formula": requested}
    failed["error"] = "; ".join(reasons)
    if not_fitted:
        failed["not_fitted"] = not_fitted
    return failed


def _use_robust(summary: dict[str, Any], result: MixedLMResult, data: pd.DataFrame) -> None:
    """Report cluster-robust tests in ``fixed``; the model-based ones stay in ``fixed_model``."""
    try:
        robust = cluster_robust(result, data)
    except (ValueError, np.linalg.LinAlgError) as exc:
        summary["robust_error"] = str(exc)
        return
    summary["fixed_model"] = summary["fixed"]
    summary["fixed_model_p_method"] = summary["p_method"]
    summary["fixed"] = {name: {k: _num(v) for k, v in fe.items()} for name, fe in robust.items()}
    summary["p_method"] = ROBUST_P_METHOD


def _annotate(
    summary: dict[str, Any],
    requested: str,
    reasons: list[str],
    not_fitted: list[dict[str, str]],
    singular: tuple[str, str] | None,
) -> dict[str, Any]:
    if reasons and summary["re_formula"] != requested:
        # Random slopes need several occasions per person; say that a simpler model was used.
        summary["fallback_from"] = requested
        summary["fallback_reason"] = reasons[0]
    if not_fitted:
        summary["not_fitted"] = not_fitted
    if singular is not None and singular[0] != summary["re_formula"]:
        summary["refit_from"] = singular[0]
        summary["refit_reason"] = singular[1]
    return summary


def _with_slope(base: str, term: str) -> str:
    body = base.replace("~", "", 1).strip() or "1"
    return f"~ {body} + {term}"


def _usage_model(
    linked: pd.DataFrame, outcome: str, plan: Mapping[str, Any], *, lagged: bool
) -> dict[str, Any]:
    """The lagged (primary) or same-period (secondary) usage model of ``outcome``."""
    key = PRIMARY_MODEL if lagged else SECONDARY_MODEL
    labels = {"label": LABELS[key], "estimand": ESTIMANDS[key]}
    labels["role"] = "primary" if lagged else "secondary"
    options = plan_options(plan)
    base = plan.get("random_effects") or "~1"
    try:
        frame, formula, info = model_frame(linked, outcome, plan, lagged=lagged)
    except ValueError as exc:
        formula = model_formulas(plan, outcome)["lagged" if lagged else "association"]
        return {**labels, "formula": formula, "re_formula": base, "error": str(exc)}
    predictors = list(plan.get("predictors", []))
    slope_term = f"{predictors[0]}{'_lag' if lagged else ''}_within" if predictors else None
    attempts = [base]
    if options["random_slope"] and slope_term is not None:
        attempts = [_with_slope(base, slope_term)]
        if base.replace(" ", "") not in ("~1", ""):
            attempts.append(_with_slope("~1", slope_term))
        # Once the previous outcome's person mean is in the model, the random intercept is
        # often estimated at zero while people still differ in their slope: keep the slope.
        attempts += [f"~ 0 + {slope_term}", base]
    model = _fit(frame, formula, attempts, refit_singular=options["refit_singular"], robust=lagged)
    if "exclusions" in model:
        # The fit saw only the rows model_frame kept; count the linked rows it left out.
        model["exclusions"] = _frame_exclusions(linked, outcome, plan, lagged, len(frame))
    if options["random_slope"] and slope_term is not None:
        used = slope_term in _columns_of(model.get("re_formula", ""))
        reason = None
        if not used:
            # Why the structure with the slope (the first tried) was not the one reported.
            refused = [n for n in model.get("not_fitted", []) if n["re_formula"] == attempts[0]]
            if refused:
                reason = refused[0]["reason"]
            elif model.get("refit_from") == attempts[0]:
                reason = model["refit_reason"]
            else:
                reason = model.get("fallback_reason") or model.get("error")
        model["random_slope"] = {"term": slope_term, "used": used, "reason": reason}
    else:
        model["random_slope"] = {"term": slope_term, "used": False, "reason": "off in the plan"}
    return {**labels, **info, **model}


def _frame_exclusions(
    linked: pd.DataFrame, outcome: str, plan: Mapping[str, Any], lagged: bool, n_used: int
) -> dict[str, Any]:
    suffix = "_lag" if lagged else ""
    usage = [f"{p}{suffix}" for p in plan.get("predictors", [])]
    if f"window_before_enrollment{suffix}" in linked.columns:
        usage.append(f"window_before_enrollment{suffix}")
    time = "wave" if plan_options(plan)["time"] == "categorical" else "weeks"
    return frame_exclusions(
        linked,
        outcome=outcome,
        usage=usage,
        lags=[f"{outcome}_lag"] if lagged else [],
        others=[*(plan.get("covariates") or []), time],
        n_used=n_used,
        groups=GROUPS,
    )


def _dose(linked: pd.DataFrame, outcome: str, usage: str) -> dict[str, Any]:
    rows = dose_rows(linked, usage)  # never bins a window before enrolment (low use ≠ not yet)
    try:
        bins = dose_response(rows, outcome=outcome, usage=usage, bins=4, groups=GROUPS)
    except ValueError as exc:
        return {"usage": usage, "error": str(exc), "bins": [], "rule": DOSE_RULE}
    return {
        "usage": usage,
        "rule": DOSE_RULE,
        "n_rows": len(rows),
        "n_excluded": len(linked) - len(rows),
        "bins": [
            {
                "label": b.label,
                "usage_low": _num(b.usage_low),
                "usage_high": _num(b.usage_high),
                "n": b.n,
                "mean": _num(b.mean),
                "ci_low": _num(b.ci_low),
                "ci_high": _num(b.ci_high),
            }
            for b in bins
        ],
    }


def run_plan(
    linked: pd.DataFrame, plan: Mapping[str, Any], *, usage_models_only: bool = False
) -> dict[str, Any]:
    """Fit every model of ``plan`` (the protocol's ``analysis`` section) on ``linked``.

    ``usage_models_only`` fits only the lagged (primary) and same-period (secondary) usage
    models, for the validity benchmark (:func:`analysis.pipeline.analyse` with
    ``extras=False``); the null, arm × time, dose-response, arm-contrast and factorial sections
    are left out of the results.
    """
    # Imported here: analysis.classifier_outcomes imports analysis.arm_contrast, which imports
    # this module.
    from analysis.classifier_outcomes import (
        classifier_outcome_entry,
        classifier_rate_contrasts,
        is_classifier_outcome,
    )

    options = plan_options(plan)
    outcomes = list(plan.get("outcomes", []))
    predictors = list(plan.get("predictors", []))
    re_formula = plan.get("random_effects") or "~1"
    main = f"{predictors[0]}_lag_within" if predictors else None
    arms = linked["arm"].dropna().unique() if "arm" in linked.columns else []
    do_arm = bool(plan.get("arm_by_time")) and len(arms) >= 2

    per_outcome: dict[str, Any] = {}
    for outcome in outcomes:
        if is_classifier_outcome(outcome):  # no usage models for a rate (classifier_outcomes.py)
            per_outcome[outcome] = classifier_outcome_entry(
                linked, outcome, plan, arm_by_time=do_arm
            )
            continue
        formulas = model_formulas(plan, outcome)
        entry: dict[str, Any] = {
            "n_rows": int(linked[outcome].notna().sum()) if outcome in linked else 0,
            PRIMARY_MODEL: _usage_model(linked, outcome, plan, lagged=True),
            SECONDARY_MODEL: _usage_model(linked, outcome, plan, lagged=False),
        }
        per_outcome[outcome] = entry
        if usage_models_only:
            continue
        entry["null_model"] = _fit(linked, formulas["null"], "~1")
        if do_arm:
            entry["arm_time_model"] = _fit(linked, formulas["arm_time"], re_formula)
        if predictors and outcome in linked and predictors[0] in linked:
            entry["dose_response"] = _dose(linked, outcome, predictors[0])

    # Primary family: the lagged within-person effect of the first predictor on each outcome.
    pvalues = []
    for outcome in outcomes:
        fixed = per_outcome[outcome][PRIMARY_MODEL].get("fixed", {})
        p = fixed.get(main, {}).get("p") if main else None
        pvalues.append(np.nan if p is None else float(p))
    qvalues = bh_adjust(pvalues) if outcomes else np.zeros(0)
    # The primary model reports cluster-robust tests when they could be computed.
    primary_methods = {
        per_outcome[o][PRIMARY_MODEL].get("p_method")
        for o in outcomes
        if per_outcome[o][PRIMARY_MODEL].get("p_method")
    }
    primary = {
        "method": "Benjamini-Hochberg",
        "p_method": primary_methods.pop() if len(primary_methods) == 1 else P_METHOD,
        "model": PRIMARY_MODEL,
        "estimand": ESTIMANDS[PRIMARY_MODEL],
        "term": main,
        "p": {o: _num(p) for o, p in zip(outcomes, pvalues, strict=True)},
        "q": {o: _num(q) for o, q in zip(outcomes, qvalues, strict=True)},
    }
    for outcome, q in zip(outcomes, qvalues, strict=True):
        per_outcome[outcome]["primary_q"] = _num(q)

    results = {
        "plan": {
            "outcomes": outcomes,
            "predictors": predictors,
            "covariates": list(plan.get("covariates", []) or []),
            "random_effects": re_formula,
            "arm_by_time": bool(plan.get("arm_by_time")),
            "window_days": plan.get("window_days", 7),
            **options,
        },
        "data": {
            "n_rows": len(linked),
            "n_participants": int(linked[GROUPS].nunique()) if len(linked) else 0,
            "waves": sorted(int(w) for w in linked["wave"].dropna().unique())
            if "wave" in linked
            else [],
        },
        "outcomes": per_outcome,
        "primary": primary,
    }
    if not usage_models_only:
        from analysis.arm_contrast import arm_contrasts  # imports fit_summary from this module

        results["arm_contrast"] = arm_contrasts(linked, plan)
        results["arm_contrast"].update(classifier_rate_contrasts(linked, plan))  # rate outcomes
        if plan.get("factorial"):
            from analysis.factorial import factorial_effects  # imports arm_contrast in turn

            results["factorial"] = factorial_effects(linked, plan)
    # Last: labels every p-value above as primary-family or exploratory.
    results["multiplicity"] = apply_multiplicity(results, plan)
    return results
