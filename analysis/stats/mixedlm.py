"""Linear mixed models with per-group random effects, fitted by REML or ML.

The model, for observations ``j`` of group ``i``::

    y_ij = x_ijᵀ β + z_ijᵀ b_i + ε_ij,   b_i ~ N(0, Σ),   ε_ij ~ N(0, σ²)

with ``Σ`` an unstructured ``q × q`` covariance (``q`` random-effect columns per group, e.g. an
intercept and a slope on time). The fit follows the parametrisation of lme4 (Bates, Mächler,
Bolker & Walker 2015, "Fitting Linear Mixed-Effects Models Using lme4", J Stat Softw 67(1),
sections 3.1-3.4): ``Σ = σ² Λ Λᵀ`` with ``Λ`` lower triangular with parameters ``θ``, ``β`` and
``σ²`` profiled out analytically, and the profiled deviance minimised over ``θ`` only.

Why it is fast: random effects are independent between groups, so the penalised system is
block diagonal. Every quantity the profiled deviance needs can be written with per-group
sufficient statistics ``ZᵢᵀZᵢ`` and ``Zᵢᵀ[Xᵢ y]`` plus the global cross-product of ``[X y]``,
computed once. One deviance (and analytic gradient) evaluation then costs ``O(G·q³)`` batched
numpy work over the ``G`` groups instead of ``O(rows)``.

Command line (stable interface, prints JSON)::

    python -m analysis.stats.mixedlm --data FILE.csv --formula "y ~ t + x" --groups pid \
        [--re "~t"] [--ml]

This module has no Django imports.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from scipy import optimize, sparse, stats
from scipy.linalg import cho_solve

from analysis.stats.formula import (
    complete_rows,
    model_matrix,
    parse_formula,
    response_vector,
)
from analysis.stats.satterthwaite import Satterthwaite, satterthwaite

__all__ = [
    "P_METHOD",
    "ContrastTest",
    "FixedEffect",
    "MixedLMResult",
    "ModelDesign",
    "UnidentifiableModelError",
    "fit_mixedlm",
    "main",
]

# How every p-value and interval of a fixed effect is computed; the report prints this name.
P_METHOD = "Satterthwaite t"


class UnidentifiableModelError(ValueError):
    """The random-effect structure cannot be estimated from these data; the fit is refused.

    Mirrors lme4's checks ``check.nlev.gtr.1``, ``check.nobs.vs.nlev`` and ``check.nobs.vs.nRE``
    (Bates, Mächler, Bolker & Walker 2015, J Stat Softw 67(1); ``?lmerControl``), which lme4
    turns into errors for linear mixed models: optimising such a model "succeeds" at an arbitrary
    split of variance between the random effects and the residual.
    """


@dataclass(frozen=True)
class FixedEffect:
    """One fixed-effect coefficient: t test and 95% interval with Satterthwaite df.

    ``t = estimate / se``; ``p`` is two-sided from Student's t with ``df`` degrees of freedom
    and the interval is ``estimate ± t₀.₉₇₅(df)·se`` (see :mod:`analysis.stats.satterthwaite`).
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    df: float
    t: float
    p: float


@dataclass(frozen=True)
class ContrastTest:
    """A test of ``L'β = 0`` for one contrast vector ``L``."""

    estimate: float
    se: float
    df: float
    t: float
    p: float
    ci_low: float
    ci_high: float


def _t_test(estimate: float, se: float, df: float) -> tuple[float, float, float, float]:
    """(t, p, ci_low, ci_high); NaN when the SE or the df are unavailable."""
    if not (se > 0 and df > 0):
        nan = float("nan")
        return nan, nan, nan, nan
    t = estimate / se
    p = float(2.0 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.975, df)) * se
    return float(t), p, float(estimate - half), float(estimate + half)


@dataclass(frozen=True)
class ModelDesign:
    """The rows and matrices a fit used, kept so post-fit summaries (R², residual diagnostics,
    predicted means, excluded rows: :mod:`analysis.stats.supplement`) need not refit or guess.

    ``dropped`` counts the input rows left out, by the tuple of used columns they miss.
    """

    frame: pd.DataFrame  # the complete rows, used columns only
    X: np.ndarray
    y: np.ndarray
    Z: np.ndarray
    codes: np.ndarray  # group index of each row, into ``MixedLMResult.blups``
    response: str
    n_input: int
    dropped: dict[tuple[str, ...], int]
    suff: SufficientStats


@dataclass
class MixedLMResult:
    """Everything a fit reports. Variances are on the data scale (not relative to σ²)."""

    method: str  # "REML" or "ML"
    formula: str
    re_formula: str
    groups: str
    fixed: dict[str, FixedEffect]
    fixed_cov: np.ndarray  # covariance of the fixed-effect estimates, σ²(XᵀV⁻¹X)⁻¹
    random_names: list[str]
    random_cov: np.ndarray  # Σ, q × q
    residual_sd: float
    loglik: float  # REML log-likelihood for REML fits (as lme4's logLik), else ML
    reml_criterion: float | None  # −2 × REML log-likelihood (lme4's "REML criterion")
    deviance: float  # −2 × loglik
    aic: float
    bic: float
    icc: float | None  # τ₀² / (τ₀² + σ²) for the random intercept, None without one
    n_obs: int
    n_groups: int
    n_dropped: int
    converged: bool
    optimizer_message: str
    iterations: int
    function_evaluations: int
    theta: np.ndarray
    singular: bool  # a random-effect variance at (or numerically at) zero
    blups: pd.DataFrame = field(repr=False)  # conditional modes, one row per group
    fixed_names: list[str] = field(default_factory=list)
    satterthwaite: Satterthwaite | None = field(default=None, repr=False)
    p_method: str = P_METHOD
    design: ModelDesign | None = field(default=None, repr=False)

    def contrast(self, L: Sequence[float] | np.ndarray) -> ContrastTest:
        """Satterthwaite t test of ``L'β = 0``, ``L`` ordered as :attr:`fixed_names`."""
        vector = np.asarray(L, dtype=float)
        if vector.shape != (len(self.fixed_names),):
            raise ValueError(
                f"contrast needs {len(self.fixed_names)} entries ({', '.join(self.fixed_names)})"
            )
        beta = np.array([self.fixed[name].estimate for name in self.fixed_names])
        estimate = float(vector @ beta)
        se = float(math.sqrt(max(float(vector @ self.fixed_cov @ vector), 0.0)))
        df = self.satterthwaite.df(vector) if self.satterthwaite is not None else float("nan")
        t, p, low, high = _t_test(estimate, se, df)
        return ContrastTest(estimate=estimate, se=se, df=df, t=t, p=p, ci_low=low, ci_high=high)

    @property
    def random_sd(self) -> dict[str, float]:
        return {
            name: float(math.sqrt(max(v, 0.0)))
            for name, v in zip(self.random_names, np.diag(self.random_cov), strict=True)
        }

    @property
    def random_corr(self) -> dict[str, float]:
        sd = np.sqrt(np.clip(np.diag(self.random_cov), 0.0, None))
        out: dict[str, float] = {}
        for i in range(len(self.random_names)):
            for j in range(i):
                denom = sd[i] * sd[j]
                value = self.random_cov[i, j] / denom if denom > 0 else float("nan")
                out[f"{self.random_names[j]}:{self.random_names[i]}"] = float(value)
        return out

    def to_dict(self) -> dict:
        """The JSON shape the command line prints (non-finite numbers become null)."""

        def num(value: float | None) -> float | None:
            if value is None or not math.isfinite(value):
                return None
            return float(value)

        return {
            "method": self.method,
            "p_method": self.p_method,
            "fixed": {
                name: {
                    "estimate": num(fe.estimate),
                    "se": num(fe.se),
                    "ci_low": num(fe.ci_low),
                    "ci_high": num(fe.ci_high),
                    "df": num(fe.df),
                    "t": num(fe.t),
                    "p": num(fe.p),
                }
                for name, fe in self.fixed.items()
            },
            "random": {
                "sd": {k: num(v) for k, v in self.random_sd.items()},
                "corr": {k: num(v) for k, v in self.random_corr.items()},
            },
            "residual_sd": num(self.residual_sd),
            "loglik": num(self.loglik),
            "reml_criterion": num(self.reml_criterion),
            "aic": num(self.aic),
            "bic": num(self.bic),
            "icc": num(self.icc),
            "n_obs": self.n_obs,
            "n_groups": self.n_groups,
            "n_dropped": self.n_dropped,
            "converged": bool(self.converged),
            "singular": bool(self.singular),
            "iterations": self.iterations,
            "optimizer_message": self.optimizer_message,
        }


# ---------------------------------------------------------------------------------------------
# Sufficient statistics and the profiled deviance
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SufficientStats:
    """Per-group and global cross-products; nothing else of the data is needed to fit.

    ``W = [X, r]`` where ``r`` is the OLS residual of ``y`` on ``X``. Fitting the model to ``r``
    instead of ``y`` gives ``β − β_OLS`` exactly (the model is linear in ``β``), and keeps
    ``rᵀr`` small so the Schur complement that yields the residual sum of squares does not lose
    digits to cancellation against a large ``yᵀy``.
    """

    ZtZ: np.ndarray  # (G, q, q)
    ZtW: np.ndarray  # (G, q, p + 1)
    WtW: np.ndarray  # (p + 1, p + 1)
    beta_ols: np.ndarray  # (p,)
    n: int
    p: int


def sufficient_stats(
    X: np.ndarray, y: np.ndarray, Z: np.ndarray, group_codes: np.ndarray
) -> SufficientStats:
    """Compute the cross-products once, vectorised over rows.

    ``group_codes`` are integers 0..G-1 (every code present), e.g. from ``pd.factorize``.
    For each random-effect column a, the per-group sums of ``zⱼₐ·[zⱼ, wⱼ]`` are one sparse
    (G × n, row i holding zⱼₐ for the rows j of group i) times dense (n × (q + k)) product:
    q passes over the data, no Python loop over rows or groups.
    """
    n, p = X.shape
    q = Z.shape[1]
    k = p + 1
    XtX = X.T @ X
    # Any β₀ gives an exact change of variables; the least-squares one makes the residual small.
    beta_ols = np.linalg.solve(XtX, X.T @ y)
    ZW = np.empty((n, q + k))  # [Z, X, y − Xβ₀]
    ZW[:, :q] = Z
    ZW[:, q : q + p] = X
    ZW[:, q + p] = y - X @ beta_ols
    n_groups = int(group_codes.max()) + 1
    order = np.argsort(group_codes, kind="stable")
    indptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(group_codes, minlength=n_groups), out=indptr[1:])
    sums = np.empty((n_groups, q, q + k))
    for a in range(q):
        weights = sparse.csr_matrix((Z[order, a], order, indptr), shape=(n_groups, n))
        sums[:, a, :] = weights @ ZW
    W = ZW[:, q:]
    return SufficientStats(
        ZtZ=np.ascontiguousarray(sums[:, :, :q]),
        ZtW=np.ascontiguousarray(sums[:, :, q:]),
        WtW=W.T @ W,
        beta_ols=beta_ols,
        n=n,
        p=p,
    )


def theta_to_lambda(theta: np.ndarray, q: int) -> np.ndarray:
    """Fill the lower triangle column by column, as lme4 orders θ."""
    lam = np.zeros((q, q))
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))  # column-major
    lam[rows[order], cols[order]] = theta
    return lam


def _theta_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


@dataclass
class _Evaluation:
    deviance: float
    gradient: np.ndarray
    beta: np.ndarray
    A: np.ndarray  # XᵀV⁻¹X / σ²-free (i.e. with V = I + ZΛΛᵀZᵀ)
    pwrss: float  # penalised weighted residual sum of squares r²(θ)
    logdet_M: float
    logdet_A: float
    Minv: np.ndarray
    lam: np.ndarray


class ProfiledDeviance:
    """Profiled deviance ``d(θ)`` (−2 log-likelihood with β, σ² at their optimum) and gradient.

    With ``Mᵢ = ΛᵀZᵢᵀZᵢΛ + I`` and ``Uᵢ = Zᵢᵀ[Xᵢ y]``, Woodbury's identity gives
    ``[X y]ᵀ(I + ZΛΛᵀZᵀ)⁻¹[X y] = WᵀW − Σᵢ UᵢᵀΛMᵢ⁻¹ΛᵀUᵢ =: Q``. Its top-left block is
    ``A = XᵀV⁻¹X`` (up to σ²), its Schur complement is the penalised residual sum of squares
    ``r²``, and ``log|V/σ²| = Σᵢ log|Mᵢ|``. Then (Bates et al. 2015, eqs. 34 and 41)::

        ML:    d(θ) = log|M| + n (1 + log(2π r²/n))
        REML:  d(θ) = log|M| + log|A| + (n−p) (1 + log(2π r²/(n−p)))
    """

    def __init__(self, suff: SufficientStats, *, reml: bool) -> None:
        self.suff = suff
        self.reml = reml
        self.q = suff.ZtZ.shape[1]
        self.rows, self.cols = _theta_index(self.q)
        self.evaluations = 0

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        ev = self.evaluate(theta)
        return ev.deviance, ev.gradient

    def evaluate(
        self, theta: np.ndarray, *, gradient: bool = True, sigma2: float | None = None
    ) -> _Evaluation:
        """Everything at ``theta``; ``gradient=False`` skips the gradient (about half the work)
        for callers that only need the deviance's pieces (the Satterthwaite derivatives).

        With ``sigma2`` the gradient is that of the deviance at a *fixed* residual variance,
        ``log|M| (+ log|A|) + r²(θ)/σ²`` (σ not profiled out), which the profile-likelihood
        intervals of :mod:`analysis.stats.profile_ci` need; ``deviance`` is unchanged."""
        self.evaluations += 1
        s = self.suff
        n, p, q = s.n, s.p, self.q
        lam = theta_to_lambda(np.asarray(theta, dtype=np.float64), q)
        S, U = s.ZtZ, s.ZtW
        G = S.shape[0]
        k = p + 1
        # Products with the fixed q × q matrix Λ are done as single 2-D BLAS calls on the
        # stacked (G·q × q) arrays; only products of two per-group matrices are batched.
        SL = (S.reshape(-1, q) @ lam).reshape(G, q, q)  # ZᵢᵀZᵢΛ
        M = _stacked_t(SL, lam) + np.eye(q)  # ΛᵀZᵢᵀZᵢΛ + I
        Minv, logdet_M = _spd_inverse_logdet(M)
        B = _stacked_t(U, lam)  # ΛᵀUᵢ, (G, q, k)
        HU = _bmm(Minv, B)  # Mᵢ⁻¹ΛᵀUᵢ
        # Σᵢ BᵢᵀMᵢ⁻¹Bᵢ as one (G·q × k)ᵀ(G·q × k) product.
        Q = s.WtW - B.reshape(-1, k).T @ HU.reshape(-1, k)
        Q = 0.5 * (Q + Q.T)
        A = Q[:p, :p]
        r = Q[:p, p]
        chol_A = np.linalg.cholesky(A)
        delta = _chol_solve(chol_A, r)
        pwrss = float(Q[p, p] - r @ delta)
        if pwrss <= 0:
            raise FloatingPointError("non-positive residual sum of squares (perfect fit?)")
        logdet_A = 2.0 * float(np.log(np.diag(chol_A)).sum())
        if self.reml:
            dof = n - p
            deviance = logdet_M + logdet_A + dof * (1.0 + math.log(2.0 * math.pi * pwrss / dof))
        else:
            dof = n
            deviance = logdet_M + n * (1.0 + math.log(2.0 * math.pi * pwrss / n))

        evaluation = partial(
            _Evaluation,
            deviance=deviance,
            beta=delta + s.beta_ols,
            A=A,
            pwrss=pwrss,
            logdet_M=logdet_M,
            logdet_A=logdet_A,
            Minv=Minv,
            lam=lam,
        )
        if not gradient:
            return evaluation(gradient=np.full(self.rows.size, np.nan))
        # Gradient. dQ/dΛ_rc = −Σᵢ (aᵢbᵢᵀ + bᵢaᵢᵀ) with aᵢ = (PᵢᵀUᵢ)[r,:], bᵢ = (HᵢUᵢ)[c,:],
        # Hᵢ = Mᵢ⁻¹Λᵀ, Pᵢᵀ = I − ZᵢᵀZᵢΛMᵢ⁻¹Λᵀ (derived from Woodbury; checked against finite
        # differences in the tests). The deviance depends on Q through N : dQ with N below.
        w = np.append(-delta, 1.0)
        # d r²/dQ = w wᵀ; the profiled deviance weighs it by dof/r², a fixed σ² by 1/σ².
        N = (dof / pwrss if sigma2 is None else 1.0 / sigma2) * np.outer(w, w)
        if self.reml:
            N[:p, :p] += _chol_solve(chol_A, np.eye(p))
        PtU = U - _bmm(SL, HU)
        grad_quad = -2.0 * np.tensordot((PtU.reshape(-1, k) @ N).reshape(G, q, k), HU,
                                        axes=([0, 2], [0, 2]))  # fmt: skip
        grad_logdet = 2.0 * np.tensordot(SL, Minv, axes=([0, 2], [0, 1]))  # Σᵢ ZᵢᵀZᵢΛMᵢ⁻¹
        grad_matrix = grad_logdet + grad_quad
        return evaluation(gradient=grad_matrix[self.rows, self.cols])


def _chol_solve(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    return cho_solve((chol, True), rhs)


def _stacked_t(stack: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Λᵀ Xᵢ for every matrix Xᵢ (q × m) in ``stack`` (G, q, m), via one 2-D product."""
    G, q, m = stack.shape
    return (stack.transpose(0, 2, 1).reshape(-1, q) @ lam).reshape(G, m, q).transpose(0, 2, 1)


def _bmm(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Batched (G, q, q) @ (G, q, m). For the tiny q of random effects, q² vectorised
    multiply-adds over all groups beat numpy's per-matrix matmul loop several times over."""
    G, q, _ = left.shape
    if q > 4:
        return left @ right
    out = np.empty((G, q, right.shape[2]))
    for i in range(q):
        row = left[:, i, 0, None] * right[:, 0, :]
        for j in range(1, q):
            row += left[:, i, j, None] * right[:, j, :]
        out[:, i, :] = row
    return out


def _spd_inverse_logdet(M: np.ndarray) -> tuple[np.ndarray, float]:
    """Inverses of a stack of SPD matrices and the sum of their log-determinants.

    Every Mᵢ = ΛᵀZᵢᵀZᵢΛ + I has eigenvalues ≥ 1, so closed forms for q ≤ 2 are numerically
    safe (no cancellation in the determinant below 1) and much faster than LAPACK per matrix.
    """
    q = M.shape[1]
    if q == 1:
        return 1.0 / M, float(np.log(M[:, 0, 0]).sum())
    if q == 2:
        a, b, d = M[:, 0, 0], M[:, 0, 1], M[:, 1, 1]
        det = a * d - b * b
        inv = np.empty_like(M)
        inv[:, 0, 0] = d / det
        inv[:, 1, 1] = a / det
        inv[:, 0, 1] = inv[:, 1, 0] = -b / det
        return inv, float(np.log(det).sum())
    chol = np.linalg.cholesky(M)
    logdet = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
    return np.linalg.inv(M), logdet


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------


def _first_collinear(X: np.ndarray) -> int | None:
    """Index of the first column that is (numerically) a linear combination of earlier ones.

    Cholesky of the scaled Gram matrix, column by column: the pivot for column j is the share
    of that column's squared norm left after projecting it onto the columns before it.
    """
    gram = X.T @ X
    norms = np.sqrt(np.diag(gram))
    norms[norms == 0] = 1.0
    corr = gram / np.outer(norms, norms)
    p = corr.shape[0]
    lower = np.zeros_like(corr)
    for j in range(p):
        pivot = corr[j, j] - lower[j, :j] @ lower[j, :j]
        if pivot < 1e-10:
            return j
        lower[j, j] = math.sqrt(pivot)
        lower[j + 1 :, j] = (corr[j + 1 :, j] - lower[j + 1 :, :j] @ lower[j, :j]) / lower[j, j]
    return None


def fit_mixedlm(
    formula: str,
    data: pd.DataFrame,
    groups: str,
    re_formula: str = "~1",
    *,
    reml: bool = True,
    start: Sequence[float] | None = None,
    maxiter: int = 200,
) -> MixedLMResult:
    """Fit ``formula`` with random effects ``re_formula`` varying over ``groups``.

    ``formula`` has a response (``"y ~ t + C(arm)"``); ``re_formula`` is one-sided (``"~1"``,
    ``"~t"``, ``"~0 + t"``). Rows missing any used column or the group are dropped. Raises
    ``ValueError`` with a message naming the offending column/term on bad input, and its
    subclass :class:`UnidentifiableModelError` when the random-effect structure cannot be
    identified from the complete rows (lme4's checks; see :func:`_check_identifiable`).
    Fixed effects carry Satterthwaite df, t and p (:mod:`analysis.stats.satterthwaite`).
    """
    fixed_f = parse_formula(formula)
    if fixed_f.response is None:
        raise ValueError(f"formula {formula!r} needs a response on the left of '~'")
    re_f = parse_formula(re_formula)
    if re_f.response is not None:
        raise ValueError(f"random-effects formula {re_formula!r} must be one-sided, like '~ t'")
    if groups not in data.columns:
        raise ValueError(f"unknown groups column {groups!r}")
    for column in [*fixed_f.columns, *re_f.columns]:
        if column not in data.columns:
            raise ValueError(f"unknown column {column!r}")
    used = list(dict.fromkeys([*fixed_f.columns, *re_f.columns, groups]))
    kept = complete_rows(data, used)
    frame = data.loc[kept]
    if len(frame) == 0:
        raise ValueError("no complete rows to fit")
    X, x_names = model_matrix(fixed_f, frame)
    y = response_vector(fixed_f, frame)
    Z, z_names = model_matrix(re_f, frame)
    if X.shape[1] == 0:
        raise ValueError("the fixed-effects design has no columns")
    if Z.shape[1] == 0:
        raise ValueError(f"random-effects formula {re_formula!r} has no columns")
    bad = _first_collinear(X)
    if bad is not None:
        raise ValueError(
            f"fixed-effects design is rank deficient: column {x_names[bad]!r} is a linear "
            "combination of the columns before it"
        )
    codes, uniques = pd.factorize(frame[groups], sort=True)
    n, p = X.shape
    if n <= p:
        raise ValueError(f"{n} complete rows is too few for {p} fixed effects")
    _check_identifiable(n, len(uniques), Z.shape[1], groups, re_formula)
    suff = sufficient_stats(X, y, Z, codes)
    result = _fit_from_stats(suff, reml=reml, start=start, maxiter=maxiter)
    ev: _Evaluation = result["evaluation"]
    q = Z.shape[1]
    dof = n - p if reml else n
    sigma2 = ev.pwrss / dof
    lam = ev.lam
    random_cov = sigma2 * (lam @ lam.T)
    fixed_cov = sigma2 * np.linalg.inv(ev.A)
    se = np.sqrt(np.diag(fixed_cov))
    sat = satterthwaite(ProfiledDeviance(suff, reml=reml), result["theta"], math.sqrt(sigma2))
    fixed: dict[str, FixedEffect] = {}
    for j, (name, est, s_e) in enumerate(zip(x_names, ev.beta, se, strict=True)):
        df = sat.df(np.eye(p)[j])
        t, p_value, low, high = _t_test(float(est), float(s_e), df)
        fixed[name] = FixedEffect(
            estimate=float(est), se=float(s_e), ci_low=low, ci_high=high, df=df, t=t, p=p_value
        )
    deviance = float(ev.deviance)
    loglik = -0.5 * deviance
    n_params = p + q * (q + 1) // 2 + 1  # fixed effects, covariance parameters, σ
    icc = None
    if "Intercept" in z_names:
        tau0 = random_cov[z_names.index("Intercept"), z_names.index("Intercept")]
        icc = float(tau0 / (tau0 + sigma2))
    # Conditional modes (BLUPs): bᵢ = ΛMᵢ⁻¹Λᵀ(Zᵢᵀyᵢ − ZᵢᵀXᵢβ). In the stored statistics the
    # last column of ZᵢᵀW holds Zᵢᵀ(y − Xβ_OLS), so shift by β − β_OLS.
    U = suff.ZtW
    resid_cross = U[:, :, p] - U[:, :, :p] @ (ev.beta - suff.beta_ols)
    b = ((lam @ ev.Minv @ lam.T) @ resid_cross[:, :, None])[:, :, 0]
    blups = pd.DataFrame(b, index=pd.Index(uniques, name=groups), columns=z_names)
    theta = result["theta"]
    diag_theta = theta[_theta_index(q)[0] == _theta_index(q)[1]]
    return MixedLMResult(
        method="REML" if reml else "ML",
        formula=formula,
        re_formula=re_formula,
        groups=groups,
        fixed=fixed,
        fixed_cov=fixed_cov,
        random_names=z_names,
        random_cov=random_cov,
        residual_sd=math.sqrt(sigma2),
        loglik=loglik,
        reml_criterion=deviance if reml else None,
        deviance=deviance,
        aic=deviance + 2 * n_params,
        bic=deviance + n_params * math.log(n),
        icc=icc,
        n_obs=n,
        n_groups=len(uniques),
        n_dropped=int((~kept).sum()),
        converged=result["converged"],
        optimizer_message=result["message"],
        iterations=result["iterations"],
        function_evaluations=result["evaluations"],
        theta=theta,
        singular=bool(np.any(diag_theta < 1e-4)),
        blups=blups,
        fixed_names=list(x_names),
        satterthwaite=sat,
        design=ModelDesign(
            frame=frame[used],
            X=X,
            y=y,
            Z=Z,
            codes=codes,
            response=fixed_f.response,
            n_input=len(data),
            dropped=_dropped_patterns(data.loc[~kept, used]),
            suff=suff,
        ),
    )


def _dropped_patterns(missing_rows: pd.DataFrame) -> dict[tuple[str, ...], int]:
    """Rows left out, counted by which used columns they miss (a handful of patterns)."""
    if len(missing_rows) == 0:
        return {}
    flags = missing_rows.isna()
    counts = flags.value_counts(sort=False)
    columns = list(flags.columns)
    return {
        tuple(c for c, missing in zip(columns, key, strict=True) if missing): int(n)
        for key, n in counts.items()
    }


def _check_identifiable(n: int, n_groups: int, q: int, groups: str, re_formula: str) -> None:
    """Refuse random-effect structures the data cannot identify, as lme4 does by default."""
    if n_groups < 2:
        raise UnidentifiableModelError(
            f"grouping factor {groups!r} has {n_groups} level; random effects need at least 2 "
            "groups (lme4 check.nlev.gtr.1)"
        )
    if n <= n_groups:
        raise UnidentifiableModelError(
            f"{n} observations for {n_groups} levels of {groups!r}: with one observation per "
            "group the random intercept cannot be separated from the residual "
            "(lme4 check.nobs.vs.nlev)"
        )
    if n <= q * n_groups:
        raise UnidentifiableModelError(
            f"{n} observations are not more than the {q * n_groups} random effects "
            f"({q} per group in {re_formula.strip()!r} x {n_groups} groups): the random-effect "
            "variances and the residual variance are unidentifiable (lme4 check.nobs.vs.nRE); "
            "use fewer random effects or more observations per group"
        )


def _fit_from_stats(
    suff: SufficientStats,
    *,
    reml: bool,
    start: Sequence[float] | None,
    maxiter: int,
) -> dict:
    q = suff.ZtZ.shape[1]
    rows, cols = _theta_index(q)
    is_diag = rows == cols
    # lme4 starts at Λ = I, i.e. random-effect SDs equal to the residual SD.
    theta0 = np.where(is_diag, 1.0, 0.0) if start is None else np.asarray(start, dtype=float)
    objective = ProfiledDeviance(suff, reml=reml)
    outcome = _damped_newton(objective, theta0, maxiter=maxiter)
    if not outcome["converged"]:
        # Rare (e.g. a very flat deviance): hand the best point to L-BFGS-B, restarting it
        # because its curvature memory can stall in the narrow valleys these deviances have.
        theta = outcome["theta"]
        for _ in range(10):
            res = optimize.minimize(
                objective,
                theta,
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-9},
            )
            moved = np.max(np.abs(res.x - theta))
            theta = np.asarray(res.x, dtype=float)
            outcome["iterations"] += int(res.nit)
            if moved < 1e-10:
                break
        outcome["theta"] = theta
        ev = objective.evaluate(theta)
        outcome["converged"] = _small_gradient(ev.gradient, theta)
        outcome["message"] += f"; L-BFGS-B fallback: {res.message}"
    theta = _canonical_theta(outcome["theta"], q)
    return {
        "theta": theta,
        "evaluation": objective.evaluate(theta),
        "converged": outcome["converged"],
        "message": outcome["message"],
        "iterations": outcome["iterations"],
        "evaluations": objective.evaluations,
    }


def _canonical_theta(theta: np.ndarray, q: int) -> np.ndarray:
    """Flip columns of Λ so its diagonal is ≥ 0; ΛΛᵀ, hence the fit, is unchanged."""
    lam = theta_to_lambda(theta, q)
    lam = lam * np.where(np.diag(lam) < 0, -1.0, 1.0)[None, :]
    rows, cols = _theta_index(q)
    return lam[rows, cols]


def _small_gradient(gradient: np.ndarray, theta: np.ndarray) -> bool:
    return bool(np.max(np.abs(gradient) * np.maximum(np.abs(theta), 1e-2)) < 1e-4)


def _damped_newton(objective: ProfiledDeviance, theta0: np.ndarray, *, maxiter: int) -> dict:
    """Minimise the profiled deviance by Newton's method with Levenberg damping.

    θ is optimised without bounds: flipping the sign of a column of Λ leaves ΛΛᵀ unchanged, so
    the unconstrained minimum equals lme4's constrained one (diagonal ≥ 0) after flipping
    columns (see :func:`_canonical_theta`). The Hessian comes from forward differences of the
    analytic gradient (len(θ) extra evaluations per iteration). Quasi-Newton methods were tried
    first: on 260,000 rows L-BFGS-B stalled far from the optimum because the deviance is very
    ill-conditioned in θ, which exact curvature handles in a few steps.
    """
    theta = np.array(theta0, dtype=float)
    k = theta.size
    f, g = objective(theta)
    damping = 0.0
    message = "iteration limit reached"
    converged = False
    iterations = 0
    for iterations in range(1, maxiter + 1):  # noqa: B007 - reported after the loop
        steps = 1e-6 * np.maximum(np.abs(theta), 1e-2)
        hess = np.empty((k, k))
        for j in range(k):
            shifted = theta.copy()
            shifted[j] += steps[j]
            hess[:, j] = (objective(shifted)[1] - g) / steps[j]
        hess = 0.5 * (hess + hess.T)
        scale = max(float(np.max(np.abs(np.diag(hess)))), 1e-12)
        while True:
            try:
                chol = np.linalg.cholesky(hess + damping * scale * np.eye(k))
                break
            except np.linalg.LinAlgError:
                damping = max(10.0 * damping, 1e-8)
        direction = -_chol_solve(chol, g)
        decrement = float(-g @ direction)  # ≈ 2 (f − f*) for an exact Newton step
        # A decrement this small moves the deviance by less than its floating-point resolution.
        if decrement < 1e-10 + 1e-14 * abs(f) or not np.isfinite(decrement):
            converged = bool(np.isfinite(decrement))
            message = "converged: Newton decrement below tolerance"
            break
        alpha = 1.0
        accepted = False
        for _ in range(40):
            candidate = theta + alpha * direction
            try:
                f_new, g_new = objective(candidate)
            except (np.linalg.LinAlgError, FloatingPointError):
                f_new = np.inf
            if np.isfinite(f_new) and f_new <= f - 1e-4 * alpha * decrement:
                accepted = True
                break
            alpha *= 0.5
        if not accepted:
            if f - f_new >= 0 and decrement < 1e-6:
                # No measurable progress is possible at floating-point resolution.
                converged = _small_gradient(g, theta)
                message = "converged: no further decrease at machine precision"
                break
            damping = max(10.0 * damping, 1e-4)
            if damping > 1e8:
                message = "line search failed"
                break
            continue
        theta, f, g = candidate, f_new, g_new
        # Full Newton steps mean the quadratic model is good: relax the damping.
        damping = damping / 10.0 if alpha == 1.0 else damping
        if damping < 1e-12:
            damping = 0.0
    return {
        "theta": theta,
        "converged": converged,
        "message": message,
        "iterations": iterations,
    }


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m analysis.stats.mixedlm``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis.stats.mixedlm",
        description="Fit a linear mixed model (REML by default) and print the result as JSON.",
    )
    parser.add_argument("--data", required=True, help="CSV file with one row per observation")
    parser.add_argument("--formula", required=True, help='fixed effects, e.g. "y ~ t + x"')
    parser.add_argument("--groups", required=True, help="column identifying the groups")
    parser.add_argument("--re", default="~1", help='random effects, e.g. "~t" (default "~1")')
    parser.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    args = parser.parse_args(argv)
    try:
        data = pd.read_csv(args.data)
    except FileNotFoundError:
        print(f"error: data file not found: {args.data}", file=sys.stderr)
        return 1
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: cannot read {args.data}: {message}", file=sys.stderr)
        return 1
    try:
        result = fit_mixedlm(args.formula, data, args.groups, args.re, reml=not args.ml)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
