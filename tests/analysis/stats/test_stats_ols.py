"""OLS with classical and cluster-robust (CR1) standard errors, against statsmodels."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analysis.stats.ols import fit_ols


@pytest.fixture
def panel() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    sizes = rng.integers(2, 9, size=40)  # unbalanced clusters
    cluster = np.repeat(np.arange(40), sizes)
    shock = rng.normal(0, 1.5, 40)[cluster]  # within-cluster correlation
    x = rng.normal(size=cluster.size) + 0.5 * shock
    arm = rng.choice(["control", "treatment"], size=cluster.size)
    y = 2.0 + 0.7 * x + 0.4 * (arm == "treatment") + shock + rng.normal(size=cluster.size)
    return pd.DataFrame({"y": y, "x": x, "arm": arm, "cluster": cluster})


def test_it_matches_statsmodels_cluster_robust_standard_errors(panel):
    # given: clustered data; when: both fit with cluster-robust errors
    ours = fit_ols("y ~ x + C(arm)", panel, cluster="cluster")
    theirs = smf.ols("y ~ x + C(arm)", panel).fit(
        cov_type="cluster", cov_kwds={"groups": panel["cluster"]}
    )
    # then: estimates and CR1 standard errors agree
    for name in theirs.params.index:
        assert ours.coefficients[name].estimate == pytest.approx(theirs.params[name], rel=1e-10)
        assert ours.coefficients[name].se == pytest.approx(theirs.bse[name], rel=1e-10)
    assert ours.n_clusters == 40
    assert ours.df == 39
    assert ours.cov_type == "cluster (CR1)"


def test_it_matches_statsmodels_classical_standard_errors(panel):
    ours = fit_ols("y ~ x + C(arm)", panel)
    theirs = smf.ols("y ~ x + C(arm)", panel).fit()
    for name in theirs.params.index:
        coef = ours.coefficients[name]
        assert coef.se == pytest.approx(theirs.bse[name], rel=1e-10)
        assert coef.p == pytest.approx(theirs.pvalues[name], rel=1e-8)
        low, high = theirs.conf_int().loc[name]
        assert (coef.ci_low, coef.ci_high) == pytest.approx((low, high), rel=1e-10)
    assert ours.r_squared == pytest.approx(theirs.rsquared, rel=1e-12)


def test_its_cluster_errors_exceed_naive_ones_when_clusters_share_shocks(panel):
    naive = fit_ols("y ~ x", panel)
    clustered = fit_ols("y ~ x", panel, cluster="cluster")
    assert clustered.se["Intercept"] > 1.5 * naive.se["Intercept"]


def test_it_drops_rows_missing_the_cluster_id(panel):
    panel["cluster"] = panel["cluster"].astype(float)
    panel.loc[[0, 1, 2], "cluster"] = np.nan
    result = fit_ols("y ~ x", panel, cluster="cluster")
    assert result.n_dropped == 3
    assert result.n_obs == len(panel) - 3


def test_it_rejects_an_unknown_cluster_column(panel):
    with pytest.raises(ValueError, match="unknown cluster column 'site'"):
        fit_ols("y ~ x", panel, cluster="site")


def test_it_rejects_collinear_predictors(panel):
    panel["x2"] = 3 * panel["x"]
    with pytest.raises(ValueError, match="rank deficient: column 'x2'"):
        fit_ols("y ~ x + x2", panel)
