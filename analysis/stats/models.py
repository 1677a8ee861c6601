"""Ready-made analyses for longitudinal studies, built on the engines in this package.

* :func:`arm_time_model` — does the outcome's trajectory differ by study arm? A mixed model
  ``y ~ time * C(arm)`` with a random intercept (and by default a random slope on time) per
  participant; the ``time:C(arm)[T.…]`` coefficients are the between-arm slope differences.
* :func:`within_between` — person-mean centring: splits a time-varying predictor into the
  participant's own mean (between-person) and the deviation from it (within-person), so a
  mixed model can estimate the two effects separately (Curran & Bauer 2011, Annu Rev Psychol
  62:583-619).
* :func:`dose_response` — outcome mean and 95% CI by quantile bins of usage.

No Django imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.mixedlm import MixedLMResult, fit_mixedlm

__all__ = ["DoseBin", "arm_time_model", "dose_response", "within_between"]


def arm_time_model(
    data: pd.DataFrame,
    *,
    outcome: str,
    time: str,
    arm: str,
    groups: str,
    random_slope: bool = True,
    reml: bool = True,
) -> MixedLMResult:
    """Fit ``outcome ~ time * C(arm)`` with ``(1 + time | groups)`` (or ``(1 | groups)``).

    The reference arm is the first in sorted order (e.g. ``"control"`` before ``"treatment"``).
    """
    formula = f"{outcome} ~ {time} * C({arm})"
    re_formula = f"~ {time}" if random_slope else "~ 1"
    return fit_mixedlm(formula, data, groups, re_formula, reml=reml)


def within_between(data: pd.DataFrame, column: str, groups: str) -> pd.DataFrame:
    """Return ``data`` with ``<column>_between`` (person mean) and ``<column>_within`` added.

    The person mean is taken over that person's non-missing values; a missing value stays
    missing in the within part.
    """
    for name in (column, groups):
        if name not in data.columns:
            raise ValueError(f"unknown column {name!r}")
    if not pd.api.types.is_numeric_dtype(data[column]):
        raise ValueError(f"column {column!r} is not numeric")
    out = data.copy()
    between = data.groupby(groups, sort=False)[column].transform("mean")
    out[f"{column}_between"] = between
    out[f"{column}_within"] = data[column] - between
    return out


@dataclass(frozen=True)
class DoseBin:
    """Outcome summary in one usage bin. The CI is a t interval around the mean."""

    label: str
    usage_low: float
    usage_high: float
    n: int
    mean: float
    ci_low: float
    ci_high: float


def dose_response(
    data: pd.DataFrame,
    *,
    outcome: str,
    usage: str,
    bins: int = 4,
    groups: str | None = None,
) -> list[DoseBin]:
    """Outcome mean with a 95% CI in each of ``bins`` quantile bins of ``usage``.

    With ``groups``, rows are first averaged per participant so every participant counts once
    (repeated waves of one person are not independent observations). Ties at bin edges can
    merge bins, so fewer than ``bins`` may come back.
    """
    for name in (outcome, usage, *([groups] if groups else [])):
        if name not in data.columns:
            raise ValueError(f"unknown column {name!r}")
    if bins < 1:
        raise ValueError("bins must be at least 1")
    frame = data[[c for c in (outcome, usage, groups) if c is not None]].dropna()
    if groups is not None:
        frame = frame.groupby(groups, sort=False)[[outcome, usage]].mean()
    if len(frame) == 0:
        raise ValueError("no complete rows")
    binned = pd.qcut(frame[usage], q=bins, duplicates="drop")
    result: list[DoseBin] = []
    for interval, part in frame.groupby(binned, observed=True, sort=True):
        values = part[outcome].to_numpy(dtype=float)
        n = values.size
        mean = float(values.mean())
        if n > 1:
            half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
        else:
            half = float("nan")
        result.append(
            DoseBin(
                label=str(interval),
                usage_low=float(np.min(part[usage])),
                usage_high=float(np.max(part[usage])),
                n=int(n),
                mean=mean,
                ci_low=mean - half,
                ci_high=mean + half,
            )
        )
    return result
