"""Profile-likelihood confidence intervals for the variance components of a mixed model.

The interval for one standard deviation (a random effect's SD, or the residual SD ``σ``) is
the set of values ``v`` whose profile deviance, the deviance minimised over every other
covariance parameter with that SD held at ``v``, is within ``χ²₁(level)`` of the minimum
(Bates et al. 2015, J Stat Softw 67(1), section 5.1; what ``confint(fit, method = "profile")``
gives for the ``.sig`` and ``.sigma`` rows in lme4). A REML fit is profiled on the REML
criterion, an ML fit on the deviance; the fixed effects are profiled out analytically in both.

The covariance is parametrised for the profile as ``Σ = L Lᵀ`` with ``L = diag(s) C``: ``s``
the SDs and ``C`` lower triangular with unit-length rows written in hyperspherical angles
(the correlations), so holding one SD fixed is holding one coordinate fixed. The deviance at
any ``(s, angles, σ)`` comes from the engine's :class:`~analysis.stats.mixedlm.ProfiledDeviance`
at ``θ = vec(L)/σ``::

    REML: log|M| + log|A| + r²(θ)/σ² + (n − p) log(2πσ²)
    ML:   log|M|          + r²(θ)/σ² + n log(2πσ²)

which at ``σ² = r²/(n − p)`` (resp. ``r²/n``) is the profiled deviance the fit minimised.
Intervals for correlations are not computed. No Django imports.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize, stats

from analysis.stats.mixedlm import (
    MixedLMResult,
    ProfiledDeviance,
    _theta_index,
    theta_to_lambda,
)

__all__ = ["PROFILE_METHOD", "variance_component_cis"]

PROFILE_METHOD = "profile likelihood"
RESIDUAL = "Residual"


def _unit_rows(angles: np.ndarray, q: int) -> np.ndarray:
    """Lower-triangular ``C`` whose row k is the unit vector with angles ``angles[k(k-1)/2:…]``."""
    out = np.zeros((q, q))
    at = 0
    for k in range(q):
        rest = 1.0
        for j in range(k):
            out[k, j] = rest * math.cos(angles[at + j])
            rest *= math.sin(angles[at + j])
        out[k, k] = rest
        at += k
    return out


def _angles_of(unit: np.ndarray) -> list[float]:
    """Hyperspherical angles of one unit vector (inverse of one row of :func:`_unit_rows`)."""
    m = unit.size
    angles = []
    for j in range(m - 1):
        if j < m - 2:
            angles.append(math.atan2(float(np.linalg.norm(unit[j + 1 :])), float(unit[j])))
        else:
            angles.append(math.atan2(float(unit[m - 1]), float(unit[m - 2])))
    return angles


class _Profile:
    def __init__(self, result: MixedLMResult) -> None:
        design = result.design
        if design is None:
            raise ValueError("the fit carries no design (fitted by an older engine)")
        self.reml = result.method == "REML"
        self.deviance = ProfiledDeviance(design.suff, reml=self.reml)
        self.q = len(result.random_names)
        self.dof = design.suff.n - design.suff.p if self.reml else design.suff.n
        self.rows, self.cols = _theta_index(self.q)
        sigma = float(result.residual_sd)
        lower = sigma * theta_to_lambda(np.asarray(result.theta, dtype=float), self.q)
        self.sds = np.linalg.norm(lower, axis=1)
        angles: list[float] = []
        for k in range(self.q):
            row = lower[k, : k + 1]
            unit = row / self.sds[k] if self.sds[k] > 0 else np.eye(k + 1)[k]
            angles += _angles_of(unit)
        self.angles = np.array(angles)
        self.sigma = sigma
        self.minimum = self.full(self.sds, self.angles, sigma)
        self.warm: dict[int, np.ndarray] = {}

    def full(self, sds: np.ndarray, angles: np.ndarray, sigma: float) -> float:
        """The (REML) deviance at these SDs, correlation angles and residual SD."""
        if not sigma > 0:
            return math.inf
        lower = np.diag(np.abs(sds)) @ _unit_rows(angles, self.q)
        theta = (lower / sigma)[self.rows, self.cols]
        try:
            ev = self.deviance.evaluate(theta, gradient=False)
        except (np.linalg.LinAlgError, FloatingPointError):
            return math.inf
        base = ev.logdet_M + (ev.logdet_A if self.reml else 0.0)
        return base + ev.pwrss / sigma**2 + self.dof * math.log(2.0 * math.pi * sigma**2)

    def full_with_gradient(
        self, sds: np.ndarray, angles: np.ndarray, sigma: float
    ) -> tuple[float, np.ndarray, np.ndarray, float]:
        """:meth:`full` and its gradient in (SDs, angles, σ), from the engine's analytic
        gradient in θ at a fixed σ² and the chain rule through ``θ = vec(diag(|s|) C)/σ``."""
        q = self.q
        unit = _unit_rows(angles, q)
        scale = np.abs(sds)
        theta = ((scale[:, None] * unit) / sigma)[self.rows, self.cols]
        nan = np.full(q, np.nan)
        if not sigma > 0:
            return math.inf, nan, np.full(angles.size, np.nan), math.nan
        try:
            ev = self.deviance.evaluate(theta, gradient=True, sigma2=sigma**2)
        except (np.linalg.LinAlgError, FloatingPointError):
            return math.inf, nan, np.full(angles.size, np.nan), math.nan
        base = ev.logdet_M + (ev.logdet_A if self.reml else 0.0)
        value = base + ev.pwrss / sigma**2 + self.dof * math.log(2.0 * math.pi * sigma**2)
        d_lower = np.zeros((q, q))
        d_lower[self.rows, self.cols] = ev.gradient / sigma  # ∂D/∂L = ∂D/∂θ · 1/σ
        # |s| is even in s: the sign of the derivative follows s (taken as + at 0, so a start
        # at a zero SD can move).
        d_sds = np.sum(d_lower * unit, axis=1) * np.where(sds >= 0, 1.0, -1.0)
        d_angles = np.empty(angles.size)
        for i in range(angles.size):
            # C is a handful of sines and cosines: central differences are exact to ~1e-10.
            step = np.zeros(angles.size)
            step[i] = 1e-6
            d_unit = (_unit_rows(angles + step, q) - _unit_rows(angles - step, q)) / 2e-6
            d_angles[i] = float(np.sum(d_lower * (scale[:, None] * d_unit)))
        d_sigma = (
            -float(ev.gradient @ theta) / sigma - 2.0 * ev.pwrss / sigma**3 + 2.0 * self.dof / sigma
        )
        return value, d_sds, d_angles, d_sigma

    def at(self, target: int, value: float) -> float:
        """Profile deviance with SD ``target`` (``q`` = the residual SD) held at ``value``."""
        q = self.q
        n_angles = self.angles.size

        def objective(free: np.ndarray) -> tuple[float, np.ndarray]:
            if target == q:
                sds, angles = free[:q], free[q:]
                d, g_sds, g_angles, _ = self.full_with_gradient(sds, angles, value)
                return d, np.concatenate([g_sds, g_angles])
            sds = np.insert(free[: q - 1], target, value)
            angles = free[q - 1 : q - 1 + n_angles]
            sigma = math.exp(free[-1])
            d, g_sds, g_angles, g_sigma = self.full_with_gradient(sds, angles, sigma)
            return d, np.concatenate([np.delete(g_sds, target), g_angles, [g_sigma * sigma]])

        if target == q:
            start = np.concatenate([self.sds, self.angles])
        else:
            start = np.concatenate(
                [np.delete(self.sds, target), self.angles, [math.log(self.sigma)]]
            )
        warm = self.warm.get(target)
        if warm is not None:
            start = warm
        if start.size == 0:
            return objective(start)[0]
        # BFGS with the analytic gradient, unconstrained: SDs enter through |s| (the deviance
        # is even in each SD: flipping a row of L leaves Σ unchanged), angles are free and σ
        # is on the log scale.
        res = optimize.minimize(objective, start, jac=True, method="BFGS", options={"gtol": 1e-5})
        # The next point on the same profile is close: start there.
        self.warm[target] = np.asarray(res.x, dtype=float)
        return float(res.fun)

    def zeta(self, target: int, value: float) -> float:
        """√(likelihood-ratio statistic) at ``value``: about linear in it, so secants converge."""
        return math.sqrt(max(self.at(target, value) - self.minimum, 0.0))


def _bound(profile: _Profile, target: int, estimate: float, direction: int, z_star: float):
    """The value on one side of ``estimate`` where ζ reaches ``z_star`` (None if unbounded).

    Secant steps on ζ(v), which is nearly linear near the optimum; bracketing and Brent's method
    only when the secant leaves the admissible side (a strongly curved profile).
    """
    is_sd = target < profile.q
    scale = estimate if estimate > 1e-8 * profile.sigma else 0.05 * profile.sigma
    if direction < 0:
        if is_sd and profile.zeta(target, 0.0) <= z_star:
            return 0.0  # the data do not exclude a zero variance
        floor = 0.0
        v = estimate - 0.3 * scale
    else:
        floor = estimate
        v = estimate + 0.3 * scale
    v_prev, z_prev = estimate, 0.0
    for _ in range(40):
        z = profile.zeta(target, v)
        if abs(z - z_star) < 1e-4:  # ≈ 4e-4 in the deviance: CI limits to ~4 digits
            return float(v)
        if z > z_star or z == z_prev:
            candidate = math.nan if z == z_prev else v + (z_star - z) * (v - v_prev) / (z - z_prev)
        else:
            candidate = v + (z_star - z) * (v - v_prev) / (z - z_prev)
        if direction > 0:
            admissible = math.isfinite(candidate) and candidate > floor
            if not admissible:
                candidate = v + 2.0 * abs(v - floor)
            if candidate > 1e12 * max(scale, 1e-12):
                return None
        else:
            admissible = math.isfinite(candidate) and floor < candidate < estimate
            if not admissible:
                candidate = 0.5 * (v + floor)
        v_prev, z_prev, v = v, z, candidate

    # Fallback: bracket on the admissible side and solve with Brent's method.
    def excess(value: float) -> float:
        return profile.zeta(target, value) - z_star

    far = v
    if excess(far) < 0:
        return None
    return float(optimize.brentq(excess, estimate, far, xtol=1e-8 * profile.sigma))


def variance_component_cis(result: MixedLMResult, *, level: float = 0.95) -> dict[str, Any]:
    """``{"sd": {name: {"estimate", "ci_low", "ci_high"}}, "method", "level"}``.

    Names are the random-effect columns (``"Intercept"``, ``"wave"``, …) and ``"Residual"``.
    A lower limit of 0 means the data do not exclude a zero variance at this level.
    """
    profile = _Profile(result)
    names = [*result.random_names, RESIDUAL]
    estimates = [*profile.sds.tolist(), profile.sigma]
    z_star = math.sqrt(float(stats.chi2.ppf(level, 1)))
    out: dict[str, dict[str, float | None]] = {}
    for target, (name, estimate) in enumerate(zip(names, estimates, strict=True)):
        bounds = []
        for direction in (-1, 1):
            profile.warm.pop(target, None)
            bounds.append(_bound(profile, target, float(estimate), direction, z_star))
        out[name] = {"estimate": float(estimate), "ci_low": bounds[0], "ci_high": bounds[1]}
    return {
        "sd": out,
        "method": f"{PROFILE_METHOD} ({'REML criterion' if profile.reml else 'deviance'})",
        "level": level,
    }
