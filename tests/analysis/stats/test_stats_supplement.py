"""Post-fit summaries: R² against a hand computation, standardised effects, profile-likelihood
CIs of the variance components against lme4, diagnostics and model-based means."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.stats.diagnostics import predicted_means, residual_diagnostics
from analysis.stats.mixedlm import ProfiledDeviance, fit_mixedlm
from analysis.stats.profile_ci import variance_component_cis
from analysis.stats.r2 import nakagawa_r2, standardised_effects

SLEEPSTUDY = Path(__file__).resolve().parents[2] / "data" / "sleepstudy.csv"


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return pd.read_csv(SLEEPSTUDY)


def test_r2_of_a_random_slope_model_matches_a_hand_computation(sleepstudy):
    # given: Reaction ~ Days + (Days | Subject)
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~Days")
    # when
    r2 = nakagawa_r2(fit)
    # then: σ²_f is the sample variance of the fixed-effect prediction, σ²_r the mean over rows
    # of (1, Days) Σ (1, Days)ᵀ (Johnson 2014), σ²_e the residual variance
    b0, b1 = fit.fixed["Intercept"].estimate, fit.fixed["Days"].estimate
    prediction = [b0 + b1 * d for d in sleepstudy["Days"]]
    mean = sum(prediction) / len(prediction)
    var_f = sum((p - mean) ** 2 for p in prediction) / (len(prediction) - 1)
    s = fit.random_cov
    var_r = sum(s[0, 0] + 2 * d * s[0, 1] + d * d * s[1, 1] for d in sleepstudy["Days"]) / len(
        sleepstudy
    )
    var_e = fit.residual_sd**2
    assert r2["var_fixed"] == pytest.approx(var_f, rel=1e-10)
    assert r2["var_random"] == pytest.approx(var_r, rel=1e-10)
    assert r2["marginal"] == pytest.approx(var_f / (var_f + var_r + var_e), rel=1e-10)
    assert r2["conditional"] == pytest.approx((var_f + var_r) / (var_f + var_r + var_e), rel=1e-10)
    # and the same as the formula evaluated in live R on lme4's fit (model.matrix, VarCorr,
    # sigma): 0.278651 / 0.799220
    assert r2["marginal"] == pytest.approx(0.278651, abs=2e-6)
    assert r2["conditional"] == pytest.approx(0.799220, abs=2e-6)


def test_r2_of_a_random_intercept_model_uses_the_intercept_variance(sleepstudy):
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~1")
    r2 = nakagawa_r2(fit)
    assert r2["var_random"] == pytest.approx(fit.random_cov[0, 0], rel=1e-12)
    # an intercept-only model explains nothing by its fixed part
    null = nakagawa_r2(fit_mixedlm("Reaction ~ 1", sleepstudy, "Subject", "~1"))
    assert null["marginal"] == 0.0 and null["conditional"] == pytest.approx(null_icc(sleepstudy))


def null_icc(data: pd.DataFrame) -> float:
    return fit_mixedlm("Reaction ~ 1", data, "Subject", "~1").icc


def test_standardised_within_effect_uses_pooled_within_person_sds():
    # given: a within-person predictor and an outcome with large between-person differences
    rng = np.random.default_rng(5)
    n, waves = 40, 5
    pid = np.repeat(np.arange(n), waves)
    x = rng.normal(0, 2, n * waves)
    frame = pd.DataFrame({"pid": pid, "x": x})
    frame["x_within"] = frame["x"] - frame.groupby("pid")["x"].transform("mean")
    frame["y"] = rng.normal(0, 10, n)[pid] + 0.5 * frame["x_within"] + rng.normal(0, 1, n * waves)
    fit = fit_mixedlm("y ~ x_within", frame, "pid", "~1")
    # when
    effect = standardised_effects(fit)["x_within"]
    # then: β × SD_within(x) / SD_within(y), both pooled over persons with n − G df

    def pooled(column: str) -> float:
        deviation = frame[column] - frame.groupby("pid")[column].transform("mean")
        return math.sqrt(float((deviation**2).sum()) / (len(frame) - n))

    expected = fit.fixed["x_within"].estimate * pooled("x_within") / pooled("y")
    assert effect["estimate"] == pytest.approx(expected, rel=1e-10)
    assert effect["scale"] == "within-person SDs"
    # and the between-person spread of y does not shrink it (the total SD would, ~10x)
    assert effect["estimate"] > 0.5


def test_profile_cis_of_an_ml_fit_match_lme4(sleepstudy):
    # given: lme4's confint(lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE),
    # method = "profile") from live R (lme4 1.1): .sig01, .sig03, .sigma
    reference = {
        "Intercept": (14.3814811, 37.7160187),
        "Days": (3.8011648, 8.7533667),
        "Residual": (22.8982662, 28.8579973),
    }
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~Days", reml=False)
    # when
    cis = variance_component_cis(fit)
    # then: the same intervals to 4 significant digits
    for name, (low, high) in reference.items():
        ours = cis["sd"][name]
        assert ours["ci_low"] == pytest.approx(low, rel=2e-4), name
        assert ours["ci_high"] == pytest.approx(high, rel=2e-4), name


def test_a_reml_profile_interval_contains_the_estimate_and_its_ends_are_at_the_chi2_cut(
    sleepstudy,
):
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~1")
    cis = variance_component_cis(fit)
    for name, sd in cis["sd"].items():
        assert sd["ci_low"] < sd["estimate"] < sd["ci_high"], name
    # independent check of the residual SD's upper end: hold σ there, minimise the REML
    # criterion over the intercept SD on a fine grid; it sits 3.84 above the minimum
    deviance = ProfiledDeviance(fit.design.suff, reml=True)
    n, p = fit.design.suff.n, fit.design.suff.p
    sigma = cis["sd"]["Residual"]["ci_high"]

    def criterion(tau: float) -> float:
        ev = deviance.evaluate(np.array([tau / sigma]), gradient=False)
        return (
            ev.logdet_M
            + ev.logdet_A
            + ev.pwrss / sigma**2
            + (n - p) * math.log(2 * math.pi * sigma**2)
        )

    best = min(criterion(t) for t in np.linspace(20.0, 60.0, 4001))
    assert best - fit.deviance == pytest.approx(3.8415, abs=2e-3)


def test_a_variance_estimated_at_zero_has_a_lower_limit_of_zero():
    # given: no between-person variation in the outcome at all
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"pid": np.repeat(np.arange(30), 4), "y": rng.normal(0, 1, 120)})
    fit = fit_mixedlm("y ~ 1", frame, "pid", "~1")
    cis = variance_component_cis(fit)["sd"]["Intercept"]
    assert cis["ci_low"] == 0.0
    assert cis["ci_high"] > cis["estimate"] >= 0.0


def test_diagnostics_residuals_and_fitted_add_up_to_the_outcome(sleepstudy):
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~Days")
    diag = residual_diagnostics(fit, max_points=1000)
    y = fit.design.y
    assert np.allclose(np.add(diag["fitted"], diag["residual"]), y)
    # BLUPs: the fitted value of a row is Xβ plus that subject's own intercept and slope
    row = sleepstudy.iloc[37]
    b = fit.blups.loc[row["Subject"]]
    expected = (
        fit.fixed["Intercept"].estimate
        + b["Intercept"]
        + (fit.fixed["Days"].estimate + b["Days"]) * row["Days"]
    )
    assert diag["fitted"][37] == pytest.approx(expected)
    # sizes are bounded however many rows: at most `quantiles` Q-Q points
    small = residual_diagnostics(fit, max_points=50, quantiles=20)
    assert len(small["fitted"]) == 50 and small["n_obs"] == 180
    assert len(small["residual_qq"]["sample"]) == 20
    assert set(small["random_qq"]) == {"Intercept", "Days"}


def test_predicted_means_per_arm_and_wave_are_the_fixed_effect_sums():
    rng = np.random.default_rng(1)
    n = 40
    pid = np.repeat(np.arange(n), 4)
    frame = pd.DataFrame(
        {
            "pid": pid,
            "wave": np.tile(np.arange(4.0), n),
            "arm": np.where(pid % 2 == 0, "a", "b"),
        }
    )
    frame["y"] = 10 + 2 * frame["wave"] * (frame["arm"] == "b") + rng.normal(0, 1, len(frame))
    fit = fit_mixedlm("y ~ wave * C(arm)", frame, "pid", "~1")
    means = predicted_means(fit, ("arm", "wave"))
    assert len(means) == 8
    beta = {k: v.estimate for k, v in fit.fixed.items()}
    cell = next(m for m in means if m["arm"] == "b" and m["wave"] == 3.0)
    expected = (
        beta["Intercept"] + beta["C(arm)[T.b]"] + 3 * (beta["wave"] + beta["wave:C(arm)[T.b]"])
    )
    assert cell["estimate"] == pytest.approx(expected)
    assert cell["ci_low"] < cell["estimate"] < cell["ci_high"] and cell["df"] > 0


def central_difference(profile, point: list, index: int, h: float = 1e-5) -> float:
    """∂/∂(coordinate ``index``) of the profile criterion at (s₁, s₂, angle, σ) = ``point``."""
    up, down = list(point), list(point)
    up[index] += h
    down[index] -= h

    def value(p: list) -> float:
        return profile.full(np.array(p[:2]), np.array(p[2:3]), p[3])

    return (value(up) - value(down)) / (2 * h)


@pytest.mark.parametrize("reml", [True, False])
def test_the_profile_gradient_matches_finite_differences(sleepstudy, reml):
    # The intervals rest on BFGS with this analytic gradient (engine's ∂/∂θ at fixed σ² and
    # the chain rule): a wrong sign or factor would stop the optimiser short of the profile.
    from analysis.stats.profile_ci import _Profile

    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~Days", reml=reml)
    profile = _Profile(fit)
    point = [20.0, 7.0, 1.2, 27.0]
    _, d_sds, d_angles, d_sigma = profile.full_with_gradient(
        np.array(point[:2]), np.array(point[2:3]), point[3]
    )
    analytic = [d_sds[0], d_sds[1], d_angles[0], d_sigma]
    for index, value in enumerate(analytic):
        assert value == pytest.approx(central_difference(profile, point, index), rel=1e-5)
