"""CR2 cluster-robust standard errors checked against the dense textbook formulas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import block_diag, sqrtm

from analysis.stats.mixedlm import fit_mixedlm
from analysis.stats.ols import fit_ols
from analysis.stats.robust import cr2_vcov, mixed_cluster_robust


def tiny_panel(seed: int = 0) -> pd.DataFrame:
    """Seven people with 2-4 occasions each (unequal cluster sizes), heteroscedastic."""
    rng = np.random.default_rng(seed)
    rows = []
    for person, n in enumerate([2, 3, 4, 3, 2, 4, 3]):
        level = rng.normal(0, 1.0)
        for t in range(n):
            x = rng.normal(0, 1)
            y = 1.0 + 0.5 * x + 0.3 * t + level + rng.normal(0, 0.5 + 0.3 * person)
            rows.append({"pid": f"p{person}", "t": float(t), "x": x, "y": y})
    return pd.DataFrame(rows)


def dense_cr2(X, y, groups, Phi_blocks):
    """Pustejovsky & Tipton (2018) eqs. 3-4 with full n × n matrices, no simplification."""
    labels = sorted(set(groups))
    index = [np.flatnonzero(np.asarray(groups) == g) for g in labels]
    order = np.concatenate(index)
    X, y = X[order], y[order]
    Phi = block_diag(*Phi_blocks)
    W = np.linalg.inv(Phi)
    M = np.linalg.inv(X.T @ W @ X)
    beta = M @ X.T @ W @ y
    e = y - X @ beta
    n = len(y)
    H = X @ M @ X.T @ W
    IH = np.eye(n) - H
    bounds = np.cumsum([0] + [len(i) for i in index])
    meat = np.zeros((X.shape[1], X.shape[1]))
    g_full = []
    for k in range(len(labels)):
        s = slice(bounds[k], bounds[k + 1])
        D = np.linalg.cholesky(Phi[s, s]).T  # upper: Φᵢ = DᵀD
        B = D @ (IH @ Phi @ IH.T)[s, s] @ D.T
        A = D.T @ np.linalg.inv(np.real(sqrtm(B))) @ D
        u = X[s].T @ W[s, s] @ A @ e[s]
        meat += np.outer(u, u)
        g_full.append((s, A @ W[s, s] @ X[s] @ M))
    cov = M @ meat @ M
    # Bell-McCaffrey df: Ω = UᵀΦU with uᵢ = (I − H)ᵀ gᵢ (gᵢ padded with zeros).
    dfs = []
    for j in range(X.shape[1]):
        U = np.zeros((n, len(labels)))
        for k, (s, G) in enumerate(g_full):
            padded = np.zeros(n)
            padded[s] = G[:, j]
            U[:, k] = IH.T @ padded
        Omega = U.T @ Phi @ U
        dfs.append(np.trace(Omega) ** 2 / np.trace(Omega @ Omega))
    return beta, cov, np.array(dfs)


def test_cr2_of_a_mixed_model_equals_the_hand_computed_sandwich():
    # given: a random-intercept-and-slope model on a tiny unbalanced panel
    data = tiny_panel()
    fit = fit_mixedlm("y ~ x + t", data, "pid", "~ t")
    # when
    robust = mixed_cluster_robust(fit, data)
    # then: the same numbers as the dense formula with Φᵢ = ZᵢΣZᵢᵀ/σ² + I
    sigma2 = fit.residual_sd**2
    X = np.column_stack([np.ones(len(data)), data["x"], data["t"]])
    blocks = []
    for g in sorted(data["pid"].unique()):
        part = data[data["pid"] == g]
        Z = np.column_stack([np.ones(len(part)), part["t"]])
        blocks.append(Z @ fit.random_cov @ Z.T / sigma2 + np.eye(len(part)))
    beta, cov, dfs = dense_cr2(X, data["y"].to_numpy(), data["pid"].to_numpy(), blocks)
    names = ["Intercept", "x", "t"]
    assert [fit.fixed[n].estimate for n in names] == pytest.approx(beta, rel=1e-6)
    assert [robust.coefficients[n].se for n in names] == pytest.approx(
        np.sqrt(np.diag(cov)), rel=1e-8
    )
    assert [robust.coefficients[n].df for n in names] == pytest.approx(dfs, rel=1e-8)
    assert robust.n_clusters == 7 and robust.n_obs == 21
    # and the robust SE is not the model-based one (the data are heteroscedastic)
    assert robust.coefficients["x"].se != pytest.approx(fit.fixed["x"].se, rel=1e-3)


def test_cr2_with_identity_working_covariance_is_the_ols_cr2():
    # given: OLS on the same panel (Φᵢ = I), where CR2 is Aᵢ = (I − Hᵢᵢ)^{-1/2}
    data = tiny_panel(seed=1)
    ols = fit_ols("y ~ x + t", data, cluster="pid")
    X = np.column_stack([np.ones(len(data)), data["x"], data["t"]])
    resid = data["y"].to_numpy() - X @ np.array(list(ols.params.values()))
    # when
    cov, df, _ = cr2_vcov(X, resid, data["pid"].to_numpy())
    # then
    sizes = data.groupby("pid", sort=True).size().tolist()
    blocks = [np.eye(n) for n in sizes]
    _, dense, dense_df = dense_cr2(X, data["y"].to_numpy(), data["pid"].to_numpy(), blocks)
    assert np.sqrt(np.diag(cov)) == pytest.approx(np.sqrt(np.diag(dense)), rel=1e-8)
    assert df == pytest.approx(dense_df, rel=1e-8)
    # and CR2 is larger than the uncorrected sandwich (CR1 without its factor)
    correction = 7 / 6 * (len(data) - 1) / (len(data) - 3)
    cr0 = np.diag(ols.cov) / correction
    assert np.all(np.diag(cov) > cr0)


def test_it_refuses_a_single_cluster():
    X = np.ones((4, 1))
    with pytest.raises(ValueError, match="at least 2 clusters"):
        cr2_vcov(X, np.arange(4.0), np.array(["a"] * 4))


def test_cr2_is_exactly_unbiased_when_the_working_covariance_is_true():
    # given: a design, clusters of unequal size and a working covariance Φ (random intercept
    # and slope); residuals e = (I − H)y have covariance Φ − XMXᵀ when Var(y) = Φ
    rng = np.random.default_rng(5)
    sizes = [2, 3, 5, 4, 3, 2]
    clusters = np.repeat(np.arange(len(sizes)), sizes)
    n = clusters.size
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 4, size=n)])
    Z = np.column_stack([np.ones(n), X[:, 2]])
    re_cov = np.array([[0.8, 0.1], [0.1, 0.3]])
    Phi = block_diag(*[Z[clusters == g] @ re_cov @ Z[clusters == g].T for g in range(6)])
    Phi += np.eye(n)
    M = np.linalg.inv(X.T @ np.linalg.inv(Phi) @ X)
    S = Phi - X @ M @ X.T
    values, vectors = np.linalg.eigh(S)
    root = vectors * np.sqrt(np.clip(values, 0, None))
    # when: E[V_CR2] = Σ_k V_CR2(e_k) over the columns e_k of a square root of Cov(e)
    expected = sum(
        cr2_vcov(X, root[:, k], clusters, re_design=Z, re_cov=re_cov)[0] for k in range(n)
    )
    # then: the model-based covariance M (Bell & McCaffrey 2002's defining property of CR2)
    assert expected == pytest.approx(M, rel=1e-8, abs=1e-12)
