"""Ordinary least squares with classical or cluster-robust (CR1) standard errors.

Cluster-robust covariance (Liang & Zeger 1986; Cameron & Miller 2015, "A Practitioner's Guide
to Cluster-Robust Inference", J Human Resources 50(2), eq. 11)::

    V = c · (XᵀX)⁻¹ (Σ_g X_gᵀ e_g e_gᵀ X_g) (XᵀX)⁻¹,   c = G/(G−1) · (N−1)/(N−K)

which is Stata's ``vce(cluster)`` and statsmodels' ``cov_type="cluster"`` default. Inference
for clustered fits uses a t distribution with G − 1 degrees of freedom, as Stata does
(Cameron & Miller 2015, section VI); classical fits use t with N − K.

No Django imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.formula import design_matrices

__all__ = ["OLSCoefficient", "OLSResult", "fit_ols"]


@dataclass(frozen=True)
class OLSCoefficient:
    estimate: float
    se: float
    t: float
    p: float
    ci_low: float
    ci_high: float


@dataclass
class OLSResult:
    formula: str
    coefficients: dict[str, OLSCoefficient]
    cov: np.ndarray
    cov_type: str  # "classical" or "cluster (CR1)"
    df: int  # degrees of freedom of the t reference distribution
    n_obs: int
    n_clusters: int | None
    n_dropped: int
    r_squared: float
    residual_sd: float

    @property
    def params(self) -> dict[str, float]:
        return {k: c.estimate for k, c in self.coefficients.items()}

    @property
    def se(self) -> dict[str, float]:
        return {k: c.se for k, c in self.coefficients.items()}


def fit_ols(formula: str, data: pd.DataFrame, *, cluster: str | None = None) -> OLSResult:
    """Fit ``formula`` by least squares; with ``cluster`` (a column), CR1 standard errors."""
    extra = [cluster] if cluster is not None else []
    if cluster is not None and cluster not in data.columns:
        raise ValueError(f"unknown cluster column {cluster!r}")
    design = design_matrices(formula, data, extra_columns=extra)
    if design.y is None:
        raise ValueError(f"formula {formula!r} needs a response on the left of '~'")
    X, y = design.X, design.y
    n, k = X.shape
    if n <= k:
        raise ValueError(f"{n} complete rows is too few for {k} coefficients")
    # QR rather than normal equations: better conditioned, and the rank check comes for free.
    Q, R = np.linalg.qr(X)
    diag = np.abs(np.diag(R))
    if np.any(diag < 1e-10 * max(diag.max(), 1.0)):
        bad = design.names[int(np.flatnonzero(diag < 1e-10 * max(diag.max(), 1.0))[0])]
        raise ValueError(f"design is rank deficient: column {bad!r} is collinear with others")
    beta = np.linalg.solve(R, Q.T @ y)
    resid = y - X @ beta
    r_inv = np.linalg.inv(R)
    bread = r_inv @ r_inv.T  # (XᵀX)⁻¹
    rss = float(resid @ resid)
    sigma2 = rss / (n - k)
    n_clusters: int | None = None
    if cluster is None:
        cov = sigma2 * bread
        df = n - k
        cov_type = "classical"
    else:
        codes, uniques = pd.factorize(data.loc[design.kept, cluster])
        n_clusters = len(uniques)
        if n_clusters < 2:
            raise ValueError(f"cluster column {cluster!r} has fewer than 2 clusters")
        scores = X * resid[:, None]
        # Per-cluster score sums, one bincount per column (vectorised over rows).
        sums = np.column_stack(
            [np.bincount(codes, weights=scores[:, j], minlength=n_clusters) for j in range(k)]
        )
        meat = sums.T @ sums
        correction = n_clusters / (n_clusters - 1) * (n - 1) / (n - k)
        cov = correction * bread @ meat @ bread
        df = n_clusters - 1
        cov_type = "cluster (CR1)"
    se = np.sqrt(np.diag(cov))
    crit = float(stats.t.ppf(0.975, df))
    coefficients = {}
    for name, est, s in zip(design.names, beta, se, strict=True):
        t = est / s if s > 0 else float("nan")
        coefficients[name] = OLSCoefficient(
            estimate=float(est),
            se=float(s),
            t=float(t),
            p=float(2.0 * stats.t.sf(abs(t), df)),
            ci_low=float(est - crit * s),
            ci_high=float(est + crit * s),
        )
    centred = y - y.mean()
    tss = float(centred @ centred)
    return OLSResult(
        formula=formula,
        coefficients=coefficients,
        cov=cov,
        cov_type=cov_type,
        df=df,
        n_obs=n,
        n_clusters=n_clusters,
        n_dropped=design.n_dropped,
        r_squared=1.0 - rss / tss if tss > 0 else float("nan"),
        residual_sd=float(np.sqrt(sigma2)),
    )
