"""Mixed-model engine: lme4's published sleepstudy fit, internal consistency, bad input."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.stats.formula import model_matrix, parse_formula
from analysis.stats.mixedlm import ProfiledDeviance, fit_mixedlm, sufficient_stats

SLEEPSTUDY = Path(__file__).resolve().parents[2] / "data" / "sleepstudy.csv"


def significant_digits_agree(value: float, reference: float, digits: int = 5) -> bool:
    """``value`` approximates ``reference`` to ``digits`` significant digits in the usual
    numerical-analysis sense: relative error below 5 x 10^-digits (Burden & Faires,
    Numerical Analysis, section 1.2)."""
    return abs(value - reference) / abs(reference) < 5.0 * 10.0**-digits


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return pd.read_csv(SLEEPSTUDY)


@pytest.fixture(scope="module")
def sleep_fit(sleepstudy):
    return fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~Days")


def test_it_reproduces_lme4_sleepstudy_fit(sleep_fit):
    # given: lme4 1.1's published REML fit of Reaction ~ Days + (Days | Subject)
    reference = {
        "reml_criterion": 1743.628272,
        "intercept": 251.40510485,
        "intercept_se": 6.824596695,
        "days": 10.46728596,
        "days_se": 1.545789644,
        "sd_intercept": 24.740657995,
        "var_intercept": 612.10015802,
        "sd_days": 5.922137659,
        "var_days": 35.07171445,
        "corr": 0.06555124,
        "residual_sd": 25.591795722,
        "residual_var": 654.94000826,
    }
    # when: we fit the same model (fixture)
    fit = sleep_fit
    ours = {
        "reml_criterion": fit.reml_criterion,
        "intercept": fit.fixed["Intercept"].estimate,
        "intercept_se": fit.fixed["Intercept"].se,
        "days": fit.fixed["Days"].estimate,
        "days_se": fit.fixed["Days"].se,
        "sd_intercept": fit.random_sd["Intercept"],
        "var_intercept": fit.random_cov[0, 0],
        "sd_days": fit.random_sd["Days"],
        "var_days": fit.random_cov[1, 1],
        "corr": fit.random_corr["Intercept:Days"],
        "residual_sd": fit.residual_sd,
        "residual_var": fit.residual_sd**2,
    }
    # then: every quantity agrees to at least 5 significant digits
    mismatched = {
        key: (ours[key], ref)
        for key, ref in reference.items()
        if not significant_digits_agree(ours[key], ref)
    }
    assert mismatched == {}
    assert fit.method == "REML"
    assert fit.converged
    assert (fit.n_obs, fit.n_groups, fit.n_dropped) == (180, 18, 0)


def test_it_finds_an_optimum_at_least_as_good_as_lme4s(sleep_fit, sleepstudy):
    # given: lme4's published estimates turned back into its θ = vech(chol(Σ) / σ)
    sd0, sd1, corr, sigma = 24.740657995, 5.922137659, 0.06555124, 25.591795722
    cov = np.array([[sd0**2, corr * sd0 * sd1], [corr * sd0 * sd1, sd1**2]])
    lam = np.linalg.cholesky(cov) / sigma
    theta_lme4 = np.array([lam[0, 0], lam[1, 0], lam[1, 1]])
    X, _ = model_matrix(parse_formula("Reaction ~ Days"), sleepstudy)
    codes, _ = pd.factorize(sleepstudy["Subject"], sort=True)
    suff = sufficient_stats(X, sleepstudy["Reaction"].to_numpy(float), X.copy(), codes)
    # when: the REML criterion is evaluated there
    at_lme4 = ProfiledDeviance(suff, reml=True)(theta_lme4)[0]
    # then: it equals lme4's printed criterion, and our optimum is no worse. (lme4's optimizer
    # stops about 1.5e-9 above the minimum, which is why its intercept variance, 612.100, and
    # ours, 612.090, differ in the 5th digit; the 2015 JSS paper printed 612.09.)
    assert at_lme4 == pytest.approx(1743.628272, abs=1e-6)
    assert sleep_fit.reml_criterion <= at_lme4
    assert sleep_fit.loglik == pytest.approx(-sleep_fit.reml_criterion / 2, rel=1e-15)


def test_it_reports_t_intervals_and_information_criteria(sleep_fit):
    days = sleep_fit.fixed["Days"]
    # Satterthwaite df = 17 here (tests/analysis/stats/test_stats_satterthwaite.py); the
    # interval uses the same t quantile as the p-value, t₀.₉₇₅(17) = 2.109816.
    assert days.ci_low == pytest.approx(days.estimate - 2.109815578 * days.se, rel=1e-6)
    assert days.ci_high == pytest.approx(days.estimate + 2.109815578 * days.se, rel=1e-6)
    assert days.t == pytest.approx(days.estimate / days.se)
    # t = 6.771 on 17 df: lmerTest prints Pr(>|t|) = 3.26e-06 (a normal z would give 1.27e-11)
    assert days.p == pytest.approx(3.26e-06, rel=2e-3)
    # lme4 counts 6 parameters: 2 fixed, 3 covariance, 1 residual
    assert sleep_fit.aic == pytest.approx(sleep_fit.reml_criterion + 12)
    assert sleep_fit.bic == pytest.approx(sleep_fit.reml_criterion + 6 * math.log(180))
    icc = 612.10015802 / (612.10015802 + 654.94000826)
    assert sleep_fit.icc == pytest.approx(icc, rel=1e-5)


def test_it_fits_sleepstudy_by_maximum_likelihood(sleepstudy):
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~Days", reml=False)
    # lme4: logLik(lmer(..., REML = FALSE)) = -875.9697 (deviance 1751.939)
    assert fit.loglik == pytest.approx(-875.96967, abs=1e-4)
    assert fit.reml_criterion is None
    assert fit.method == "ML"
    # ML fixed effects equal REML's in balanced data; lme4 prints variances 565.52, 32.68
    # and residual 654.94 for this fit
    assert fit.fixed["Days"].estimate == pytest.approx(10.46728596, rel=1e-8)
    assert fit.random_cov[0, 0] == pytest.approx(565.52, abs=0.01)
    assert fit.random_cov[1, 1] == pytest.approx(32.68, abs=0.01)
    assert fit.residual_sd**2 == pytest.approx(654.94, abs=0.01)
    assert fit.aic == pytest.approx(1763.939, abs=1e-3)


def test_its_gradient_matches_finite_differences(sleepstudy):
    # given: the profiled deviance of the sleepstudy model at an arbitrary θ
    X, _ = model_matrix(parse_formula("Reaction ~ Days"), sleepstudy)
    codes, _ = pd.factorize(sleepstudy["Subject"], sort=True)
    suff = sufficient_stats(X, sleepstudy["Reaction"].to_numpy(float), X.copy(), codes)
    for reml in (True, False):
        deviance = ProfiledDeviance(suff, reml=reml)
        theta = np.array([0.7, -0.2, 0.4])
        # when: comparing the analytic gradient with central differences
        _, gradient = deviance(theta)
        h = 1e-6
        numeric = [
            (deviance(theta + h * e)[0] - deviance(theta - h * e)[0]) / (2 * h) for e in np.eye(3)
        ]
        # then: they agree
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-5)


def test_it_falls_back_to_lbfgsb_when_newton_runs_out_of_iterations(sleepstudy, sleep_fit):
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~Days", maxiter=1)
    assert "L-BFGS-B fallback" in fit.optimizer_message
    assert fit.converged
    assert fit.reml_criterion == pytest.approx(sleep_fit.reml_criterion, abs=1e-6)


def test_its_blups_are_the_conditional_modes(sleep_fit, sleepstudy):
    blups = sleep_fit.blups
    assert list(blups.columns) == ["Intercept", "Days"]
    assert len(blups) == 18
    # BLUPs of a mixed model sum to (almost) zero over balanced groups
    np.testing.assert_allclose(blups.sum().to_numpy(), 0.0, atol=1e-6)
    # lme4: ranef(fm1)$Subject["308", ] = 2.2585509  9.1989758
    assert blups.loc[308, "Intercept"] == pytest.approx(2.2585509, abs=2e-3)
    assert blups.loc[308, "Days"] == pytest.approx(9.1989758, abs=2e-4)


def test_it_drops_rows_with_missing_values_and_says_how_many(sleepstudy):
    data = sleepstudy.copy()
    data.loc[[0, 5, 17], "Reaction"] = np.nan
    data.loc[30, "Subject"] = np.nan
    fit = fit_mixedlm("Reaction ~ Days", data, "Subject", "~Days")
    assert fit.n_dropped == 4
    assert fit.n_obs == 176
    complete = data.dropna()
    again = fit_mixedlm("Reaction ~ Days", complete, "Subject", "~Days")
    assert fit.reml_criterion == pytest.approx(again.reml_criterion, rel=1e-12)


def test_it_fits_a_random_intercept_model(sleepstudy):
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject")
    # lme4: lmer(Reaction ~ Days + (1 | Subject)) -> REML criterion 1786.5, SDs 37.12 / 30.99
    assert fit.reml_criterion == pytest.approx(1786.465, abs=1e-3)
    assert fit.random_sd["Intercept"] == pytest.approx(37.124, abs=1e-3)
    assert fit.residual_sd == pytest.approx(30.991, abs=1e-3)
    assert fit.random_corr == {}


def test_it_reports_a_singular_fit_when_groups_do_not_vary():
    # given: data singular by construction. x and the noise are centred within each group, so
    # every group's mean of y is exactly 2.0: the groups differ by less than the residual noise
    # alone would make them, and the intercept variance's REML estimate sits on zero.
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"g": np.repeat(np.arange(20), 5), "x": rng.normal(size=100)})
    noise = pd.Series(rng.normal(size=100))
    data["x"] -= data.groupby("g")["x"].transform("mean")
    noise -= noise.groupby(data["g"]).transform("mean")
    data["y"] = 2.0 + data["x"] + noise
    assert np.allclose(data.groupby("g")["y"].mean(), 2.0)
    # when
    fit = fit_mixedlm("y ~ x", data, "g")
    # then: the fit says so, unconditionally
    assert fit.random_sd["Intercept"] < 1e-3
    assert fit.singular
    assert fit.converged
    assert fit.fixed["x"].estimate == pytest.approx(1.0, abs=0.3)


@pytest.mark.parametrize(
    ("formula", "groups", "re_formula", "message"),
    [
        ("Reaction ~ Nope", "Subject", "~1", "unknown column 'Nope'"),
        ("Reaction ~ Days", "Patient", "~1", "unknown groups column 'Patient'"),
        ("Reaction ~ Days", "Subject", "~Hours", "unknown column 'Hours'"),
        ("Reaction ~ Days +", "Subject", "~1", "a term is expected after '+'"),
        ("~ Days", "Subject", "~1", "needs a response"),
        ("Reaction ~ Days", "Subject", "y ~ Days", "must be one-sided"),
    ],
)
def test_it_rejects_bad_input_with_a_clear_message(
    sleepstudy, formula, groups, re_formula, message
):
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_mixedlm(formula, sleepstudy, groups, re_formula)


def test_it_rejects_a_rank_deficient_design(sleepstudy):
    data = sleepstudy.assign(Days2=sleepstudy["Days"] * 2.0)
    with pytest.raises(ValueError, match="rank deficient: column 'Days2'"):
        fit_mixedlm("Reaction ~ Days + Days2", data, "Subject")
