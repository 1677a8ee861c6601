"""Satterthwaite t tests and lme4's identifiability checks in the mixed-model engine."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.stats.mixedlm import UnidentifiableModelError, fit_mixedlm

SLEEPSTUDY = Path(__file__).resolve().parents[2] / "data" / "sleepstudy.csv"


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return pd.read_csv(SLEEPSTUDY)


def test_random_slopes_match_published_lmertest_output(sleepstudy):
    # given: lmerTest's summary of lmer(Reaction ~ Days + (Days | Subject), sleepstudy), REML
    # (Kuznetsova, Brockhoff & Christensen 2017, J Stat Softw 82(13); the package's printed
    # fixed-effects table):
    #   (Intercept) 251.405  6.825  df 17.000  t 36.838
    #   Days         10.467  1.546  df 17.000  t  6.771  Pr(>|t|) 3.26e-06
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~Days")
    days, intercept = fit.fixed["Days"], fit.fixed["Intercept"]
    # then
    assert (round(days.estimate, 3), round(days.se, 3)) == (10.467, 1.546)
    assert days.df == pytest.approx(17.0, abs=1e-3)
    assert round(days.t, 3) == 6.771
    assert days.p == pytest.approx(3.26e-06, rel=2e-3)
    assert (round(intercept.estimate, 3), round(intercept.se, 3)) == (251.405, 6.825)
    assert intercept.df == pytest.approx(17.0, abs=1e-3)
    assert round(intercept.t, 3) == 36.838
    assert fit.p_method == "Satterthwaite t"
    assert fit.to_dict()["fixed"]["Days"]["df"] == pytest.approx(17.0, abs=1e-3)


def _anova_pieces(data: pd.DataFrame) -> tuple[float, float, float]:
    """Between- and within-subject mean squares of the balanced sleepstudy and Σ(d − d̄)²."""
    days = data["Days"].to_numpy(float)
    y = data["Reaction"].to_numpy(float)
    subject = data["Subject"]
    n_subjects = subject.nunique()
    y_c = y - data.groupby("Subject")["Reaction"].transform("mean").to_numpy()
    d_c = days - data.groupby("Subject")["Days"].transform("mean").to_numpy()
    sxx = float(d_c @ d_c)
    slope = float(d_c @ y_c) / sxx
    ms_within = float(np.sum((y_c - slope * d_c) ** 2)) / (len(y) - n_subjects - 1)
    means = data.groupby("Subject")["Reaction"].mean().to_numpy()
    per_subject = len(y) // n_subjects
    ms_between = per_subject * float(np.var(means, ddof=1))
    return ms_between, ms_within, sxx


def test_random_intercept_df_equal_the_closed_form_of_the_balanced_design(sleepstudy):
    # given: Reaction ~ Days + (1 | Subject), REML. The design is balanced (18 subjects x 10
    # days) and the intercept variance is positive, so REML equals the ANOVA estimator and
    # Var(L'β̂) = a·MS_between + b·MS_within with a = 1/180, b = (L₂ − L₁·d̄)²/Sxx: a linear
    # combination of two mean squares on 17 and 161 df, whose Satterthwaite (1946) df is
    # (a·MSB + b·MSW)² / ((a·MSB)²/17 + (b·MSW)²/161). For the intercept that is 22.810, for
    # Days exactly 161. (The brief quoted "df 32.25" and "SE 0.8039" for this model; neither
    # survives this derivation, which gives SE(Days) = 0.8042 as lme4 prints.)
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~1")
    msb, msw, sxx = _anova_pieces(sleepstudy)

    def closed_form(L: np.ndarray) -> tuple[float, float]:
        between = msb / 180 * L[0] ** 2
        within = msw * (L[1] - 4.5 * L[0]) ** 2 / sxx
        df = (between + within) ** 2 / (between**2 / 17 + within**2 / 161)
        return df, float(np.sqrt(between + within))

    # then: the fixed effects
    days = fit.fixed["Days"]
    assert days.df == pytest.approx(161.0, abs=1e-3)
    assert round(days.se, 4) == 0.8042
    intercept = fit.fixed["Intercept"]
    expected_df, expected_se = closed_form(np.array([1.0, 0.0]))
    assert expected_df == pytest.approx(22.810, abs=1e-3)
    assert intercept.df == pytest.approx(expected_df, abs=1e-3)
    assert intercept.se == pytest.approx(expected_se, rel=1e-6)
    # and general contrasts: the mean at day 4.5 rests on MS_between alone (df 17), day 9 mixes
    for L in ([1.0, 4.5], [1.0, 9.0], [2.0, -3.0]):
        test = fit.contrast(L)
        df, se = closed_form(np.array(L))
        assert test.df == pytest.approx(df, abs=1e-3)
        assert test.se == pytest.approx(se, rel=1e-6)
        assert test.p == pytest.approx(2 * stats.t.sf(abs(test.estimate / se), df), rel=1e-4)
    assert fit.contrast([1.0, 4.5]).df == pytest.approx(17.0, abs=1e-3)


def test_a_contrast_of_the_wrong_length_names_the_coefficients(sleepstudy):
    fit = fit_mixedlm("Reaction ~ Days", sleepstudy, "Subject", "~1")
    with pytest.raises(ValueError, match=r"contrast needs 2 entries \(Intercept, Days\)"):
        fit.contrast([1.0])


def _small_cohort(seed: int, n: int = 8, waves: int = 4) -> pd.DataFrame:
    """A between-person arm contrast with no true effect; most variance lies between people."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), waves)
    wave = np.tile(np.arange(waves), n).astype(float)
    arm = np.where(np.arange(n) % 2 == 0, "a", "b")[pid]
    y = 10 + 0.5 * wave + rng.normal(0, 3, n)[pid] + rng.normal(0, 2, pid.size)
    return pd.DataFrame({"pid": pid, "wave": wave, "arm": arm, "y": y})


def test_with_eight_participants_the_t_test_holds_its_size_where_z_does_not():
    # given: 300 null cohorts of 8 participants x 4 waves, the arm effect tested between people
    rejected_t = rejected_z = 0
    dfs = []
    for seed in range(300):
        fit = fit_mixedlm("y ~ wave + C(arm)", _small_cohort(seed), "pid", "~1")
        arm = fit.fixed["C(arm)[T.b]"]
        rejected_t += arm.p < 0.05
        rejected_z += 2 * stats.norm.sf(abs(arm.t)) < 0.05
        if not fit.singular:
            dfs.append(arm.df)
    # then: in a balanced design the arm contrast rests on the between-person mean square
    # alone, so its df is exactly participants − 2 = 6 whenever the fit is not singular
    assert len(dfs) > 250
    np.testing.assert_allclose(dfs, 6.0, atol=1e-3)
    # and the Satterthwaite t test keeps its nominal 5% while the normal z rejects too often
    assert rejected_t / 300 <= 0.06
    assert rejected_z / 300 >= rejected_t / 300 + 0.015


# --- identifiability (lme4's lmerControl checks) ------------------------------------------


def _two_waves(n: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    pid = np.repeat(np.arange(n), 2)
    wave = np.tile([0.0, 1.0], n)
    return pd.DataFrame({"pid": pid, "wave": wave, "y": rng.normal(size=pid.size) + pid % 3})


def test_random_slopes_on_baseline_and_one_wave_are_refused():
    # given: 2 observations per person and 2 random effects per person (40 rows, 40 effects)
    with pytest.raises(UnidentifiableModelError) as caught:
        fit_mixedlm("y ~ wave", _two_waves(), "pid", "~ wave")
    message = str(caught.value)
    assert "40 observations are not more than the 40 random effects" in message
    assert "check.nobs.vs.nRE" in message
    # and the random intercept alone is identifiable on the same data
    assert fit_mixedlm("y ~ wave", _two_waves(), "pid", "~1").n_groups == 20


def test_one_observation_per_group_is_refused():
    one_each = _two_waves().query("wave == 0")
    with pytest.raises(UnidentifiableModelError, match=r"check\.nobs\.vs\.nlev"):
        fit_mixedlm("y ~ 1", one_each, "pid", "~1")


def test_a_single_group_is_refused():
    data = _two_waves().assign(pid=1)
    with pytest.raises(UnidentifiableModelError, match=r"'pid' has 1 level.*check\.nlev\.gtr\.1"):
        fit_mixedlm("y ~ wave", data, "pid", "~1")


def test_the_refusal_is_a_value_error_for_callers_that_report_bad_input():
    # The command line and the plan catch ValueError; the refusal must reach them as one.
    assert issubclass(UnidentifiableModelError, ValueError)


def test_a_singular_fit_still_gets_finite_df():
    # given: no slope variance at all, so (wave | pid) is estimated on the boundary
    rng = np.random.default_rng(5)
    pid = np.repeat(np.arange(30), 5)
    wave = np.tile(np.arange(5.0), 30)
    y = 2 + 0.3 * wave + rng.normal(0, 1, 30)[pid] + rng.normal(0, 1, pid.size)
    data = pd.DataFrame({"pid": pid, "wave": wave, "y": y})
    fit = fit_mixedlm("y ~ wave", data, "pid", "~wave")
    assert fit.singular
    # then: θ is optimised without bounds, so the boundary is an interior minimum in θ and the
    # deviance's Hessian is positive definite there (no direction dropped by the pseudo-inverse);
    # the df are finite and lie between the between-person (29) and the total (150) information
    assert np.all(np.linalg.eigvalsh(fit.satterthwaite.hessian) > 0)
    assert fit.satterthwaite.n_zero_eigen == 0
    for term in fit.fixed.values():
        assert 20 < term.df < 150
        assert 0 <= term.p <= 1
