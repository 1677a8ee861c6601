"""Multiple-comparison adjustment: Benjamini–Hochberg false discovery rate.

Benjamini & Hochberg (1995), "Controlling the False Discovery Rate", J R Stat Soc B 57(1):
with m p-values sorted ascending, p₍ᵢ₎ is adjusted to min over j ≥ i of m·p₍ⱼ₎/j, capped at 1.
Rejecting adjusted p ≤ α controls the FDR at α for independent (or positively dependent) tests.

No Django imports.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["bh_adjust", "bh_reject"]


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
