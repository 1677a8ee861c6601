"""Variance explained and standardised effects of a fitted linear mixed model.

* :func:`nakagawa_r2`: marginal R² (fixed effects only) and conditional R² (fixed + random)
  of Nakagawa & Schielzeth (2013, "A general and simple method for obtaining R² from
  generalized linear mixed-effects models", Methods Ecol Evol 4:133-142), with Johnson's
  (2014, "Extension of Nakagawa & Schielzeth's R²GLMM to random slopes models", Methods Ecol
  Evol 5:944-946) random-effect variance for random slopes::

      σ²_f = var(Xβ̂)                    (over the rows the model used, n − 1 denominator)
      σ²_r = tr(Σ̂ · ZᵀZ / n)            (the mean of zᵢᵀΣ̂zᵢ over rows; = τ₀² for an intercept)
      R²_m = σ²_f / (σ²_f + σ²_r + σ̂²),  R²_c = (σ²_f + σ²_r) / (σ²_f + σ²_r + σ̂²)

  These are what R's ``MuMIn::r.squaredGLMM`` reports for a Gaussian ``lmer`` fit.
* :func:`standardised_effects`: ``β · SD(x) / SD(y)``. For within-person terms (names holding
  ``_within``) both SDs are pooled within-person SDs (deviations from each participant's own
  mean over the model's rows), so the effect reads "within-person SDs of the outcome per
  within-person SD of usage"; for other numeric terms the SDs are over all the model's rows;
  for a 0/1 dummy of ``C(…)`` it is ``β / SD(y)`` (a standardised mean difference);
  intercepts and interactions get none (their scale depends on the coding of other terms).

No Django imports.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analysis.stats.mixedlm import MixedLMResult

__all__ = ["nakagawa_r2", "standardised_effects", "within_sd"]

R2_METHOD = "Nakagawa & Schielzeth (2013); random slopes: Johnson (2014)"


def _design(result: MixedLMResult):
    if result.design is None:
        raise ValueError("the fit carries no design (fitted by an older engine)")
    return result.design


def nakagawa_r2(result: MixedLMResult) -> dict[str, Any]:
    """Marginal and conditional R² and the three variance parts they are built from."""
    design = _design(result)
    beta = np.array([result.fixed[name].estimate for name in result.fixed_names])
    linear = design.X @ beta
    var_fixed = float(np.var(linear, ddof=1)) if linear.size > 1 else 0.0
    if var_fixed < 1e-12 * float(np.var(design.y)):
        var_fixed = 0.0  # an intercept-only model: rounding noise, not explained variance
    n = design.Z.shape[0]
    var_random = float(np.trace(result.random_cov @ (design.Z.T @ design.Z)) / n)
    var_residual = float(result.residual_sd**2)
    total = var_fixed + var_random + var_residual
    if not total > 0:
        raise ValueError("the outcome has no variance")
    return {
        "marginal": var_fixed / total,
        "conditional": (var_fixed + var_random) / total,
        "var_fixed": var_fixed,
        "var_random": var_random,
        "var_residual": var_residual,
        "method": R2_METHOD,
    }


def within_sd(values: np.ndarray, codes: np.ndarray) -> float:
    """Pooled within-group SD: √(Σ (x − x̄_group)² / (n − G))."""
    n_groups = int(codes.max()) + 1 if codes.size else 0
    dof = values.size - n_groups
    if dof <= 0:
        return float("nan")
    sums = np.bincount(codes, weights=values, minlength=n_groups)
    counts = np.bincount(codes, minlength=n_groups)
    deviation = values - (sums / counts)[codes]
    return float(math.sqrt(float(deviation @ deviation) / dof))


def _is_dummy(name: str) -> bool:
    return "[" in name and name.endswith("]")


def standardised_effects(result: MixedLMResult) -> dict[str, dict[str, Any]]:
    """``{term: {"estimate", "ci_low", "ci_high", "scale"}}`` for every term that has one."""
    design = _design(result)
    y_total = float(np.std(design.y, ddof=1))
    y_within = within_sd(design.y, design.codes)
    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(result.fixed_names):
        if name == "Intercept" or ":" in name:
            continue
        effect = result.fixed[name]
        if _is_dummy(name):
            factor, scale = 1.0 / y_total, "outcome SD"
        elif "_within" in name:
            factor = within_sd(design.X[:, j], design.codes) / y_within
            scale = "within-person SDs"
        else:
            factor, scale = float(np.std(design.X[:, j], ddof=1)) / y_total, "total SDs"
        if not math.isfinite(factor):
            continue
        out[name] = {
            "estimate": effect.estimate * factor,
            "ci_low": effect.ci_low * factor,
            "ci_high": effect.ci_high * factor,
            "scale": scale,
        }
    return out
