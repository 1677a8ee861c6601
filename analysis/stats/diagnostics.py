"""Post-fit checks and predictions of a linear mixed model, as small JSON-able summaries.

* :func:`residual_diagnostics`: conditional fitted values and residuals (``y − Xβ̂ − Zb̂``) for a
  residual-vs-fitted plot, and normal Q-Q points of the standardised residuals and of each
  random effect's conditional modes (BLUPs). Sizes are bounded (an evenly spaced subset of rows
  for the scatter, at most ``quantiles`` points per Q-Q line) so a stored result stays small
  however many rows the study has.
* :func:`predicted_means`: model-based means on a grid of factor levels (e.g. arm × wave), other
  numeric columns held at their mean over the model's rows, each with its Satterthwaite t
  interval (:meth:`~analysis.stats.mixedlm.MixedLMResult.contrast`).

No Django imports.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.formula import model_matrix, parse_formula
from analysis.stats.mixedlm import MixedLMResult

__all__ = ["normal_qq", "predicted_means", "residual_diagnostics"]


def normal_qq(values: np.ndarray, *, points: int = 200) -> dict[str, list[float]]:
    """Sample quantiles against standard normal ones at ``min(n, points)`` probabilities."""
    values = np.sort(np.asarray(values, dtype=float))
    m = min(values.size, points)
    if m == 0:
        return {"theoretical": [], "sample": []}
    probs = (np.arange(1, m + 1) - 0.5) / m
    return {
        "theoretical": stats.norm.ppf(probs).tolist(),
        "sample": np.quantile(values, probs).tolist(),
    }


def _design(result: MixedLMResult):
    if result.design is None:
        raise ValueError("the fit carries no design (fitted by an older engine)")
    return result.design


def residual_diagnostics(
    result: MixedLMResult, *, max_points: int = 400, quantiles: int = 200
) -> dict[str, Any]:
    design = _design(result)
    beta = np.array([result.fixed[name].estimate for name in result.fixed_names])
    blups = result.blups.to_numpy(dtype=float)  # rows in group-code order
    fitted = design.X @ beta + np.einsum("ij,ij->i", design.Z, blups[design.codes])
    residual = design.y - fitted
    take = np.unique(np.linspace(0, fitted.size - 1, min(fitted.size, max_points)).astype(int))
    sigma = float(result.residual_sd)
    random_qq = {}
    for k, name in enumerate(result.random_names):
        sd = math.sqrt(max(float(result.random_cov[k, k]), 0.0))
        if sd > 0:
            random_qq[name] = normal_qq(blups[:, k] / sd, points=quantiles)
    return {
        "fitted": fitted[take].tolist(),
        "residual": residual[take].tolist(),
        "n_points": int(take.size),
        "n_obs": int(fitted.size),
        "residual_qq": normal_qq(residual / sigma if sigma > 0 else residual, points=quantiles),
        "random_qq": random_qq,
    }


def predicted_means(
    result: MixedLMResult, by: Sequence[str], *, max_cells: int = 200
) -> list[dict[str, Any]]:
    """One row per combination of the observed levels of ``by``, with a 95% t interval."""
    design = _design(result)
    formula = parse_formula(result.formula)
    frame = design.frame
    missing = [c for c in by if c not in frame.columns]
    if missing:
        raise ValueError(f"the model does not use column {missing[0]!r}")
    levels = [sorted(pd.unique(frame[c])) for c in by]
    cells = list(itertools.product(*levels))
    if len(cells) > max_cells:
        raise ValueError(f"{len(cells)} cells of {', '.join(by)} are too many to tabulate")
    grid = pd.DataFrame(cells, columns=list(by))
    for column in formula.columns:
        if column in by or column == formula.response:
            continue
        series = frame[column]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            raise ValueError(f"cannot average over the categorical column {column!r}")
        grid[column] = float(series.mean())
    if formula.response is not None:
        grid[formula.response] = 0.0  # not used for the design, but the formula names it
    L, names = model_matrix(formula, grid)
    if names != list(result.fixed_names):
        raise ValueError("the prediction grid does not reproduce the model's coding")
    rows = []
    for cell, vector in zip(cells, L, strict=True):
        test = result.contrast(vector)
        rows.append(
            {
                **{
                    c: (v.item() if hasattr(v, "item") else v)
                    for c, v in zip(by, cell, strict=True)
                },
                "estimate": test.estimate,
                "se": test.se,
                "df": test.df,
                "ci_low": test.ci_low,
                "ci_high": test.ci_high,
            }
        )
    return rows
