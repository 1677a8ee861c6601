"""Running a protocol's analysis plan over the linked table: mixed models → a JSON-able dict.

Pure (no Django): takes the table built by :func:`analysis.linking.link_usage_to_outcomes` and
the protocol's ``analysis`` section, fits with :mod:`analysis.stats`, and returns plain dicts and
lists (floats, ints, strings, None) that can be stored in a JSONField as they are.

For every outcome ``y`` in ``plan["outcomes"]``:

* **usage model**: ``y ~ x1_within + x1_between + … (+ covariates) + wave`` with random effects
  ``plan["random_effects"]`` (default ``"~1"``) over participants. ``x_within`` is the
  within-person association (weeks with more use than one's own average), ``x_between`` the
  between-person one;
* **arm × time model** (``arm_by_time`` and an ``arm`` column with ≥ 2 arms):
  ``y ~ wave * C(arm)``, same random effects;
* **null model** ``y ~ 1`` for the outcome's intraclass correlation;
* **dose-response**: outcome mean and 95% CI by quartile of the first predictor, participants
  averaged first (:func:`analysis.stats.models.dose_response`).

Every p-value is a Satterthwaite t test (:mod:`analysis.stats.satterthwaite`; the method's
name is in each model's ``"p_method"`` and in ``results["primary"]["p_method"]``).
Benjamini–Hochberg q-values are computed across outcomes for the first predictor's within-person
p-value (the plan's primary question). A model that cannot be fitted is reported with
``"error"`` (the reason) instead of stopping the run. A random-effect structure the data cannot
identify (lme4's checks, :class:`~analysis.stats.mixedlm.UnidentifiableModelError`) is never
fitted: it is listed under ``"not_fitted"`` with the reason, and the model falls back to a random
intercept when that one is identifiable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.multiplicity import apply_multiplicity
from analysis.stats.mixedlm import P_METHOD, MixedLMResult, UnidentifiableModelError, fit_mixedlm
from analysis.stats.models import dose_response
from analysis.stats.multiple import bh_adjust

__all__ = ["MIN_GROUPS", "fit_summary", "model_formulas", "run_plan"]

GROUPS = "participant"
# Below this many participants a variance component cannot be estimated with any meaning, so
# the model is skipped (the Satterthwaite df would be tiny and the test nearly powerless).
MIN_GROUPS = 5


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def model_formulas(plan: Mapping[str, Any], outcome: str) -> dict[str, str]:
    """The fixed-effects formulas the plan implies for ``outcome`` (for the report, too)."""
    terms = []
    for predictor in plan.get("predictors", []):
        terms += [f"{predictor}_within", f"{predictor}_between"]
    terms += list(plan.get("covariates", []) or [])
    terms.append("wave")
    return {
        "usage": f"{outcome} ~ " + " + ".join(terms),
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


def _fit(data: pd.DataFrame, formula: str, re_formula: str) -> dict[str, Any]:
    """Fit one model; report why not instead of raising, falling back to a random intercept."""
    needed = _columns_of(formula) + _columns_of(re_formula)
    missing = [c for c in needed if c not in data.columns]
    if missing:
        return {"formula": formula, "re_formula": re_formula, "error": f"no column {missing[0]!r}"}
    complete = data.dropna(subset=[*needed, GROUPS])
    n_groups = int(complete[GROUPS].nunique())
    if n_groups < MIN_GROUPS:
        return {
            "formula": formula,
            "re_formula": re_formula,
            "error": f"too few participants with complete data ({n_groups} < {MIN_GROUPS})",
            "n_obs": len(complete),
            "n_groups": n_groups,
        }
    attempts = [re_formula] if re_formula.replace(" ", "") in ("~1", "") else [re_formula, "~1"]
    reasons = []
    not_fitted = []
    for re_f in attempts:
        try:
            summary = fit_summary(fit_mixedlm(formula, data, GROUPS, re_f))
        except UnidentifiableModelError as exc:
            # Refused, as lme4 refuses it: recorded as its own row, never as a fit.
            not_fitted.append({"re_formula": re_f, "reason": str(exc)})
            reasons.append(f"{re_f}: {exc}")
            continue
        except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            reasons.append(f"{re_f}: {exc}")
            continue
        if reasons:
            # Random slopes need several waves per person; say that the simpler model was used.
            summary["fallback_from"] = re_formula
            summary["fallback_reason"] = reasons[0]
        if not_fitted:
            summary["not_fitted"] = not_fitted
        return summary
    failed = {"formula": formula, "re_formula": re_formula, "error": "; ".join(reasons)}
    if not_fitted:
        failed["not_fitted"] = not_fitted
    return failed


def _dose(linked: pd.DataFrame, outcome: str, usage: str) -> dict[str, Any]:
    try:
        bins = dose_response(linked, outcome=outcome, usage=usage, bins=4, groups=GROUPS)
    except ValueError as exc:
        return {"usage": usage, "error": str(exc), "bins": []}
    return {
        "usage": usage,
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


def run_plan(linked: pd.DataFrame, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Fit every model of ``plan`` (the protocol's ``analysis`` section) on ``linked``."""
    outcomes = list(plan.get("outcomes", []))
    predictors = list(plan.get("predictors", []))
    re_formula = plan.get("random_effects") or "~1"
    main = f"{predictors[0]}_within" if predictors else None
    arms = linked["arm"].dropna().unique() if "arm" in linked.columns else []
    do_arm = bool(plan.get("arm_by_time")) and len(arms) >= 2

    per_outcome: dict[str, Any] = {}
    for outcome in outcomes:
        formulas = model_formulas(plan, outcome)
        entry: dict[str, Any] = {
            "n_rows": int(linked[outcome].notna().sum()) if outcome in linked else 0,
            "usage_model": _fit(linked, formulas["usage"], re_formula),
            "null_model": _fit(linked, formulas["null"], "~1"),
        }
        if do_arm:
            entry["arm_time_model"] = _fit(linked, formulas["arm_time"], re_formula)
        if predictors and outcome in linked and predictors[0] in linked:
            entry["dose_response"] = _dose(linked, outcome, predictors[0])
        per_outcome[outcome] = entry

    # Primary family: the within-person effect of the first predictor on each outcome.
    pvalues = []
    for outcome in outcomes:
        fixed = per_outcome[outcome]["usage_model"].get("fixed", {})
        p = fixed.get(main, {}).get("p") if main else None
        pvalues.append(np.nan if p is None else float(p))
    qvalues = bh_adjust(pvalues) if outcomes else np.zeros(0)
    primary = {
        "method": "Benjamini-Hochberg",
        "p_method": P_METHOD,
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
    from analysis.arm_contrast import arm_contrasts  # imports fit_summary from this module

    results["arm_contrast"] = arm_contrasts(linked, plan)
    # Last: labels every p-value above as primary-family or exploratory.
    results["multiplicity"] = apply_multiplicity(results, plan)
    return results
