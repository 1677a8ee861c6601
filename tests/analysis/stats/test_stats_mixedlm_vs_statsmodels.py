"""Our mixed-model engine against statsmodels MixedLM on randomly shaped longitudinal data."""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from statsmodels.regression.mixed_linear_model import MixedLMParams

from analysis.stats.mixedlm import fit_mixedlm

SHAPES = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "n_groups": st.integers(10, 40),
        "min_size": st.integers(3, 6),
        "extra_size": st.integers(0, 10),  # max group size = min_size + extra_size
        "missing": st.sampled_from([0.0, 0.1, 0.3]),
        "slope": st.booleans(),
        "reml": st.booleans(),
    }
)


def simulate(shape: dict) -> pd.DataFrame:
    """Unbalanced panel: each group has its own number of waves, some waves are missing."""
    rng = np.random.default_rng(shape["seed"])
    sizes = rng.integers(shape["min_size"], shape["min_size"] + shape["extra_size"] + 1,
                         size=shape["n_groups"])  # fmt: skip
    pid = np.repeat(np.arange(shape["n_groups"]), sizes)
    t = np.concatenate([np.arange(s) for s in sizes]).astype(float)
    x = rng.normal(size=pid.size)
    b0 = rng.normal(0.0, 2.0, shape["n_groups"])
    b1 = rng.normal(0.0, 0.7, shape["n_groups"])
    y = 1.0 + 0.3 * t + 0.5 * x + b0[pid] + b1[pid] * t * shape["slope"]
    y = y + rng.normal(size=pid.size)
    data = pd.DataFrame({"pid": [f"p{i:03d}" for i in pid], "t": t, "x": x, "y": y})
    # missing waves: rows vanish entirely
    return data[rng.random(len(data)) >= shape["missing"]].reset_index(drop=True)


def fit_statsmodels(data: pd.DataFrame, re_formula: str, reml: bool):
    model = smf.mixedlm("y ~ t + x", data, groups=data["pid"], re_formula=re_formula)
    best = None
    # statsmodels' default optimiser stops early (variance components off by ~1e-4); BFGS
    # with a tight gradient tolerance reaches the optimum, Nelder-Mead first rescues the rare
    # start from which BFGS fails.
    for method in ("bfgs", ["nm", "bfgs"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = model.fit(reml=reml, method=method, gtol=1e-10, maxiter=3000)
        if best is None or result.llf > best.llf:
            best = result
        if result.converged:
            break
    return model, best


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(shape=SHAPES)
def test_it_agrees_with_statsmodels_mixedlm(shape):
    # given: an unbalanced longitudinal data set
    data = simulate(shape)
    re_formula = "~t" if shape["slope"] else "~1"
    # when: both engines fit the same model
    ours = fit_mixedlm("y ~ t + x", data, "pid", re_formula, reml=shape["reml"])
    model, theirs = fit_statsmodels(data, re_formula, shape["reml"])
    # then: statsmodels' own likelihood, evaluated at our estimates, equals our log-likelihood
    beta = np.array([ours.fixed[name].estimate for name in theirs.fe_params.index])
    relative_cov = ours.random_cov / ours.residual_sd**2
    # statsmodels inverts the covariance, which loses digits when a fit is singular (a variance
    # at 0): nudge it off the boundary. At an interior optimum the nudge changes the
    # log-likelihood only to second order; at the boundary by about 1e-8.
    relative_cov += 1e-8 * np.eye(len(relative_cov)) * max(1.0, relative_cov.max())
    at_ours = model.loglike(MixedLMParams.from_components(beta, cov_re=relative_cov))
    assert abs(at_ours - ours.loglik) < 1e-6 + 1e-9 * abs(ours.loglik)
    # ... we never end below statsmodels' optimum
    assert ours.loglik >= theirs.llf - 1e-9 * abs(theirs.llf)
    assert ours.converged
    # ... and the estimates agree to 1e-4 relative. A singular fit sits on the boundary, where
    # the likelihood is nearly flat and statsmodels only locates the covariance to ~1e-3.
    tol = 1e-3 if ours.singular else 1e-4
    assert abs(ours.loglik - theirs.llf) <= 1e-6 * abs(theirs.llf)
    for name in theirs.fe_params.index:
        scale = max(abs(theirs.fe_params[name]), theirs.bse_fe[name])
        assert abs(ours.fixed[name].estimate - theirs.fe_params[name]) <= tol * scale, name
    cov_theirs = np.asarray(theirs.cov_re)
    # covariances relative to the variances' scale (a covariance near 0 has no relative size)
    cov_scale = np.sqrt(np.outer(np.diag(cov_theirs), np.diag(cov_theirs)))
    cov_scale = np.maximum(cov_scale, 1e-6 * theirs.scale)
    np.testing.assert_array_less(np.abs(ours.random_cov - cov_theirs), tol * cov_scale)
    assert abs(ours.residual_sd**2 - theirs.scale) <= tol * theirs.scale
    assert ours.n_obs == len(data)
    assert ours.n_groups == data["pid"].nunique()


def test_it_fits_three_correlated_random_effects_like_statsmodels():
    # given: random intercept, slope on t and slope on x, all correlated
    rng = np.random.default_rng(1)
    pid = np.repeat(np.arange(60), 8)
    t = np.tile(np.arange(8.0), 60)
    x = rng.normal(size=pid.size)
    cov = [[2.0, 0.3, 0.2], [0.3, 0.5, 0.1], [0.2, 0.1, 0.8]]
    b = rng.multivariate_normal([0.0, 0.0, 0.0], cov, size=60)
    y = 1 + 0.5 * t + x + b[pid, 0] + b[pid, 1] * t + b[pid, 2] * x + rng.normal(size=pid.size)
    data = pd.DataFrame({"pid": pid, "t": t, "x": x, "y": y})
    # when
    ours = fit_mixedlm("y ~ t + x", data, "pid", "~ t + x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smf.mixedlm("y ~ t + x", data, groups=data["pid"], re_formula="~t + x").fit(
            method="bfgs", gtol=1e-10, maxiter=3000
        )
    # then
    assert ours.random_names == ["Intercept", "t", "x"]
    assert set(ours.random_corr) == {"Intercept:t", "Intercept:x", "t:x"}
    np.testing.assert_allclose(ours.random_cov, np.asarray(theirs.cov_re), rtol=1e-5, atol=1e-6)
    assert ours.loglik == pytest.approx(theirs.llf, rel=1e-9)
