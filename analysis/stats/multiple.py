"""Multiple-comparison adjustment: Holm, Bonferroni and Benjamini–Hochberg.

* Benjamini & Hochberg (1995), "Controlling the False Discovery Rate", J R Stat Soc B 57(1):
  with m p-values sorted ascending, p₍ᵢ₎ is adjusted to min over j ≥ i of m·p₍ⱼ₎/j, capped at 1.
  Rejecting adjusted p ≤ α controls the FDR at α for independent (or positively dependent)
  tests.
* Holm (1979), "A Simple Sequentially Rejective Multiple Test Procedure", Scand J Stat 6(2):
  p₍ᵢ₎ is adjusted to max over j ≤ i of (m − j + 1)·p₍ⱼ₎, capped at 1. Controls the
  family-wise error rate at α under any dependence, and rejects everything Bonferroni does.
* Bonferroni: m·p, capped at 1.

NaN entries (tests not run) stay NaN and do not count towards m.

No Django imports.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["ADJUSTMENTS", "bh_adjust", "bh_reject", "bonferroni_adjust", "holm_adjust"]


def bh_adjust(pvalues: ArrayLike) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values, same shape as the input.

    NaN entries (tests not run) stay NaN and do not count towards m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    present = ~np.isnan(flat)
    values = flat[present]
    if np.any((values < 0) | (values > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = values.size
    out = np.full(flat.shape, np.nan)
    if m == 0:
        return out.reshape(p.shape)
    order = np.argsort(values, kind="stable")
    ranked = values[order] * m / np.arange(1, m + 1)
    # Running minimum from the largest p-value down enforces monotonicity.
    adjusted_sorted = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    out[present] = adjusted
    return out.reshape(p.shape)


def bh_reject(pvalues: ArrayLike, alpha: float = 0.05) -> np.ndarray:
    """Which hypotheses are rejected at FDR level ``alpha`` (NaN p-values are never rejected)."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be between 0 and 1")
    adjusted = bh_adjust(pvalues)
    return np.where(np.isnan(adjusted), False, adjusted <= alpha)


def _present(pvalues: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    present = ~np.isnan(flat)
    if np.any((flat[present] < 0) | (flat[present] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    return p, flat, present


def holm_adjust(pvalues: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values, same shape as the input."""
    p, flat, present = _present(pvalues)
    values = flat[present]
    m = values.size
    out = np.full(flat.shape, np.nan)
    if m:
        order = np.argsort(values, kind="stable")
        ranked = values[order] * (m - np.arange(m))
        # Running maximum from the smallest p-value up: a hypothesis is rejected only after
        # every smaller one was.
        adjusted_sorted = np.minimum(np.maximum.accumulate(ranked), 1.0)
        adjusted = np.empty(m)
        adjusted[order] = adjusted_sorted
        out[present] = adjusted
    return out.reshape(p.shape)


def bonferroni_adjust(pvalues: ArrayLike) -> np.ndarray:
    """Bonferroni adjusted p-values (m·p capped at 1), same shape as the input."""
    p, flat, present = _present(pvalues)
    out = np.full(flat.shape, np.nan)
    out[present] = np.minimum(flat[present] * int(present.sum()), 1.0)
    return out.reshape(p.shape)


# The corrections a protocol's analysis plan may name (multiplicity.correction).
ADJUSTMENTS = {
    "holm": holm_adjust,
    "bonferroni": bonferroni_adjust,
    "benjamini-hochberg": bh_adjust,
}
