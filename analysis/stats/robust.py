"""Cluster-robust (CR2) standard errors for the fixed effects of a fitted linear mixed model.

Why a sandwich on the marginal (GLS) fit: the fixed effects of a mixed model are the generalised
least-squares estimate ``β = (Σᵢ XᵢᵀWᵢXᵢ)⁻¹ Σᵢ XᵢᵀWᵢyᵢ`` with the *working* weights
``Wᵢ = Φᵢ⁻¹``, ``Φᵢ = ZᵢΣZᵢᵀ/σ² + I`` taken from the fitted variance components. That estimate
stays consistent when the random-effect structure is wrong (e.g. a missing random slope, or
residuals correlated over time), but its model-based covariance ``σ²(XᵀWX)⁻¹`` does not. The
sandwich with participants as clusters (Liang & Zeger 1986, Biometrika 73(1):13-22) is valid
whatever the within-participant covariance is.

Why CR2 rather than CR1 (the ``G/(G−1)`` correction of :mod:`analysis.stats.ols`): with a few
dozen participants the plain sandwich is biased downwards. CR2 (Bell & McCaffrey 2002, Survey
Methodology 28(2):169-181; Pustejovsky & Tipton 2018, J Bus Econ Stat 36(4):672-683, eq. 4)
adjusts each cluster's residuals with ``Aᵢ = Dᵢᵀ Bᵢ^{-1/2} Dᵢ``, ``Bᵢ = Dᵢ (Φᵢ − XᵢMXᵢᵀ) Dᵢᵀ``,
``Φᵢ = DᵢᵀDᵢ``, ``M = (XᵀWX)⁻¹``, which makes the estimator exactly unbiased when the working
model is right; tests then use Student's t with the Bell-McCaffrey (Satterthwaite) degrees of
freedom of the quadratic form, as Pustejovsky & Tipton recommend (R package clubSandwich,
``coef_test(..., vcov = "CR2", test = "Satterthwaite")``).

``Bᵢ`` uses the identity ``(I − H)Φ(I − H)ᵀ = Φ − XMXᵀ`` (``H = XMXᵀW``, ``W = Φ⁻¹``), whose
diagonal block for cluster ``i`` is ``Φᵢ − XᵢMXᵢᵀ``; the test suite checks the result against
the dense textbook formula. Clusters are processed in batches of equal size (numpy's stacked
linear algebra), so a few thousand participants cost milliseconds, not a Python loop each.

No Django imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats.formula import complete_rows, model_matrix, parse_formula, response_vector
from analysis.stats.mixedlm import MixedLMResult

__all__ = ["RobustCoefficient", "RobustResult", "cr2_vcov", "mixed_cluster_robust"]

METHOD = "CR2 cluster-robust, Bell-McCaffrey df"


@dataclass(frozen=True)
class RobustCoefficient:
    estimate: float
    se: float
    df: float
    t: float
    p: float
    ci_low: float
    ci_high: float


@dataclass
class RobustResult:
    coefficients: dict[str, RobustCoefficient]
    cov: np.ndarray
    n_obs: int
    n_clusters: int
    method: str = METHOD


def _inverse_sqrt_psd(B: np.ndarray) -> np.ndarray:
    """Symmetric ``B^{-1/2}`` for a stack of PSD matrices; null directions map to 0.

    A cluster whose rows span a fixed-effect column on their own (e.g. a participant-level
    dummy) makes ``Bᵢ`` singular; the Moore-Penrose square root is what clubSandwich uses.
    """
    values, vectors = np.linalg.eigh(B)
    top = np.max(np.abs(values), axis=-1, keepdims=True)
    keep = values > 1e-12 * np.maximum(top, 1e-300)
    inv_sqrt = np.where(keep, 1.0 / np.sqrt(np.where(keep, values, 1.0)), 0.0)
    return (vectors * inv_sqrt[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def cr2_vcov(
    X: np.ndarray,
    resid: np.ndarray,
    clusters: np.ndarray,
    phi_blocks: list[np.ndarray] | None = None,
    *,
    re_design: np.ndarray | None = None,
    re_cov: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CR2 covariance of a GLS fit, and the Bell-McCaffrey df of each coefficient.

    The working covariance of a cluster is ``Φᵢ = Zᵢ re_cov Zᵢᵀ + I`` (``re_design`` = Z,
    ``re_cov`` = Σ/σ²); without them ``Φᵢ = I`` (ordinary least squares). Returns
    ``(cov, df, M)`` with ``M = (XᵀΦ⁻¹X)⁻¹`` the working-model bread.
    ``phi_blocks`` is not used by callers of the platform; it exists so a test can pass
    arbitrary per-cluster working covariances (ordered as the sorted cluster codes).
    """
    X = np.asarray(X, dtype=float)
    resid = np.asarray(resid, dtype=float)
    p = X.shape[1]
    codes, uniques = pd.factorize(np.asarray(clusters), sort=True)
    n_clusters = len(uniques)
    if n_clusters < 2:
        raise ValueError("cluster-robust standard errors need at least 2 clusters")
    sizes = np.bincount(codes, minlength=n_clusters)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

    # Batches of clusters with the same number of rows: (G_s, s, ·) stacks.
    batches = []
    for size in np.unique(sizes):
        which = np.flatnonzero(sizes == size)
        rows = (starts[which][:, None] + np.arange(size)[None, :]).ravel()
        idx = order[rows].reshape(len(which), size)
        Xs = X[idx]  # (G_s, s, p)
        es = resid[idx]  # (G_s, s)
        if phi_blocks is not None:
            Phi = np.stack([np.asarray(phi_blocks[c], dtype=float) for c in which])
        elif re_design is not None and re_cov is not None:
            Zs = np.asarray(re_design, dtype=float)[idx]  # (G_s, s, q)
            Phi = Zs @ re_cov @ np.swapaxes(Zs, 1, 2) + np.eye(size)
        else:
            Phi = np.broadcast_to(np.eye(size), (len(which), size, size)).copy()
        W = np.linalg.inv(Phi)
        batches.append((Xs, es, Phi, W))

    XtWX = sum(np.einsum("gsp,gst,gtk->pk", Xs, W, Xs) for Xs, _, _, W in batches)
    M = np.linalg.inv(XtWX)
    M = 0.5 * (M + M.T)

    meat = np.zeros((p, p))
    # For the df: per cluster and coefficient, d = gᵀΦg and f = gᵀX with g = AWXMc.
    d_all = []
    f_all = []
    for Xs, es, Phi, W in batches:
        L = np.linalg.cholesky(Phi)  # Φ = LLᵀ, so D = Lᵀ (upper) and Φ = DᵀD
        D = np.swapaxes(L, 1, 2)
        inner = Phi - Xs @ M @ np.swapaxes(Xs, 1, 2)
        B = D @ inner @ L
        B = 0.5 * (B + np.swapaxes(B, 1, 2))
        A = L @ _inverse_sqrt_psd(B) @ D  # Dᵀ B^{-1/2} D
        WX = W @ Xs  # (G_s, s, p)
        u = np.einsum("gsp,gst,gt->gp", WX, A, es)  # XᵢᵀWᵢAᵢeᵢ
        meat += u.T @ u
        G = A @ WX @ M  # column j is gᵢ for the coefficient j, (G_s, s, p)
        d_all.append(np.einsum("gsj,gst,gtj->gj", G, Phi, G))
        f_all.append(np.einsum("gsj,gsk->gjk", G, Xs))  # (G_s, p coefficient, p column)
    cov = M @ meat @ M
    cov = 0.5 * (cov + cov.T)

    d = np.concatenate(d_all)  # (G, p)
    F = np.concatenate(f_all)  # (G, p, p)
    df = np.empty(p)
    for j in range(p):
        Fj = F[:, j, :]  # rows fᵢ
        MFF = M @ (Fj.T @ Fj)
        quad = np.einsum("gk,kl,gl->g", Fj, M, Fj)  # fᵢ M fᵢᵀ
        trace = d[:, j].sum() - np.trace(MFF)
        trace_sq = (d[:, j] ** 2).sum() - 2.0 * (d[:, j] * quad).sum() + np.trace(MFF @ MFF)
        df[j] = trace**2 / trace_sq if trace_sq > 0 else float("nan")
    return cov, df, M


def _coefficient(estimate: float, se: float, df: float) -> RobustCoefficient:
    if not (se > 0 and df > 0 and math.isfinite(df)):
        nan = float("nan")
        return RobustCoefficient(estimate, se, df, nan, nan, nan, nan)
    t = estimate / se
    half = float(stats.t.ppf(0.975, df)) * se
    return RobustCoefficient(
        estimate=estimate,
        se=se,
        df=float(df),
        t=float(t),
        p=float(2.0 * stats.t.sf(abs(t), df)),
        ci_low=estimate - half,
        ci_high=estimate + half,
    )


def mixed_cluster_robust(result: MixedLMResult, data: pd.DataFrame) -> RobustResult:
    """CR2 standard errors of ``result``'s fixed effects, clustered by its grouping column.

    ``data`` must be the frame the model was fitted on (the same complete rows are selected
    again, as :func:`analysis.stats.mixedlm.fit_mixedlm` selects them).
    """
    fixed_f = parse_formula(result.formula)
    re_f = parse_formula(result.re_formula)
    kept = complete_rows(data, [*fixed_f.columns, *re_f.columns, result.groups])
    frame = data.loc[kept]
    X, names = model_matrix(fixed_f, frame)
    if names != result.fixed_names:
        raise ValueError("the data do not give the design the model was fitted with")
    y = response_vector(fixed_f, frame)
    Z, _ = model_matrix(re_f, frame)
    sigma2 = result.residual_sd**2
    beta = np.array([result.fixed[name].estimate for name in names])
    cov, df, _ = cr2_vcov(
        X,
        y - X @ beta,
        frame[result.groups].to_numpy(),
        re_design=Z,
        re_cov=result.random_cov / sigma2,
    )
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    coefficients = {
        name: _coefficient(float(b), float(s), float(v))
        for name, b, s, v in zip(names, beta, se, df, strict=True)
    }
    return RobustResult(
        coefficients=coefficients,
        cov=cov,
        n_obs=len(frame),
        n_clusters=int(frame[result.groups].nunique()),
    )
