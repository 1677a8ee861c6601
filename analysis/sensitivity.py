"""Sensitivity analyses of the primary usage term: does the answer survive other defensible choices?

Pure (no Django). :func:`sensitivity_analyses` takes the linked table, the plan and the results of
:func:`analysis.plan.run_plan`, reads the primary term (``results["primary"]["term"]``) and the
model holding it (``results["primary"].get("model", "usage_model")``, its formula and fitted
random-effect structure from the model dict), and re-estimates that one term four ways:

1. **excluding the baseline occasion** (its outcome *and* its usage window, which mostly lies
   before enrolment): the baseline rows are dropped, lagged columns are recomputed so no row
   borrows a baseline value, and person means are taken over the rows that remain;
2. **alternative random-effect structures**: random intercept only, random slope on the primary
   usage term, random slope on time, leaving out the one the primary model used;
3. **cluster-robust standard errors**: the primary fit with a CR2 sandwich clustered by
   participant and Bell-McCaffrey degrees of freedom (:mod:`analysis.stats.robust`);
4. **missing-not-at-random delta adjustment**: missed follow-up occasions are multiply imputed
   under MAR from a mixed model, the imputations are shifted by δ in the unfavourable direction
   of the outcome, the primary model is refitted on each completed data set and the estimates
   are pooled with Rubin's rules; one entry per δ of the plan's grid (a tipping-point table).

Every analysis returns an entry (``key, name, description, outcomes, note``); an outcome the
analysis cannot be computed for has ``"error"`` instead of numbers, and an analysis that fails as
a whole has an entry-level ``"error"``. Nothing here stops the run.

Plan keys (all optional): ``mnar_deltas`` (in SDs of the observed outcome, default
``[0, 0.25, 0.5]``), ``mnar_imputations`` (m, default 20), ``mnar_seed`` (default 2026) and
``higher_is_better`` (``{outcome: bool}``; built-in for the platform's instruments).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis import plan as plan_module
from analysis.stats.formula import complete_rows, model_matrix, parse_formula
from analysis.stats.mixedlm import (
    MixedLMResult,
    ProfiledDeviance,
    UnidentifiableModelError,
    fit_mixedlm,
    sufficient_stats,
)
from analysis.stats.robust import METHOD as ROBUST_METHOD
from analysis.stats.robust import mixed_cluster_robust

__all__ = [
    "DEFAULT_DELTAS",
    "DEFAULT_IMPUTATIONS",
    "HIGHER_IS_BETTER",
    "MISSED",
    "occasion_grid",
    "sensitivity_analyses",
    "sensitivity_from_frames",
]

GROUPS = "participant"
DEFAULT_DELTAS: tuple[float, ...] = (0.0, 0.25, 0.5)
DEFAULT_IMPUTATIONS = 20
DEFAULT_SEED = 2026
# Same floor as analysis.plan.MIN_GROUPS: fewer participants give no meaningful variance split.
MIN_GROUPS = 5
# Which direction is good, per instrument (the part of "<instrument>.<score>" before the dot).
# The δ shift goes the other way: imputed outcomes of people who stopped answering are assumed
# to be worse than MAR predicts. Source: each instrument's scoring notes in surveys/instruments.
HIGHER_IS_BETTER: dict[str, bool] = {
    "who5": True,  # well-being index
    "lsns6": True,  # size of the social network
    "ema_mood": True,
    "ema_energy": True,
    "phq9": False,  # depressive symptoms
    "gad7": False,  # anxiety symptoms
    "ucla3": False,  # loneliness
    "ema_loneliness": False,
}
# The instrument name of the placeholder responses that stand for missed occasions when the
# occasion grid is linked (no real instrument has a name starting with an underscore).
MISSED = "_missed"
MISSED_STATUSES = ("expired", "cancelled")
WITHIN, BETWEEN = "_within", "_between"


class _Skip(ValueError):
    """This outcome cannot be analysed this way; the message says why (shown in the report)."""


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Preparing the data a model is fitted on
# ---------------------------------------------------------------------------------------------


def _derived_base(column: str) -> str | None:
    for suffix in (WITHIN, BETWEEN):
        if column.endswith(suffix):
            return column[: -len(suffix)]
    return None


def _formula_columns(formula: str, re_formula: str) -> list[str]:
    seen = dict.fromkeys([*parse_formula(formula).columns, *parse_formula(re_formula).columns])
    return list(seen)


def centre(
    data: pd.DataFrame,
    formula: str,
    re_formula: str,
    *,
    recompute: bool,
    exclude: Sequence[str] = (),
) -> pd.DataFrame:
    """``data`` with the ``<x>_within`` / ``<x>_between`` columns the formulas use.

    They are computed from ``<x>`` over the rows the model will use (every other column it
    needs present, ``exclude`` aside), so the person mean is the mean of the modelled rows
    (Curran & Bauer 2011). With ``recompute=False`` columns already in ``data`` are kept as the
    primary analysis had them, and only absent ones are computed.
    """
    needed = [*_formula_columns(formula, re_formula), GROUPS]
    derived = {}
    for column in needed:
        base = _derived_base(column)
        if base is not None and base in data.columns and (recompute or column not in data):
            derived[column] = base
    if not derived:
        return data
    plain = [c for c in needed if c not in derived and c not in exclude]
    missing = [c for c in plain if c not in data.columns]
    if missing:
        raise _Skip(f"no column {missing[0]!r}")
    out = data.copy()
    usable = out[[*plain, *set(derived.values())]].notna().all(axis=1).to_numpy()
    # numpy group means (bincount) instead of a pandas groupby: the imputation loop calls this
    # once per completed data set.
    codes, uniques = pd.factorize(out[GROUPS])
    usable = usable & (codes >= 0)
    for column, base in derived.items():
        values = out[base].to_numpy(dtype=float)
        sums = np.bincount(codes[usable], weights=values[usable], minlength=len(uniques))
        counts = np.bincount(codes[usable], minlength=len(uniques))
        with np.errstate(invalid="ignore", divide="ignore"):
            person = np.where(counts > 0, sums / counts, np.nan)
        mean = np.where(codes >= 0, person[np.maximum(codes, 0)], np.nan)
        out[column] = mean if column.endswith(BETWEEN) else np.where(usable, values - mean, np.nan)
    return out


def previous_positions(data: pd.DataFrame, waves: Sequence[float]) -> np.ndarray:
    """Row position of each row's previous scheduled occasion of the same participant, or −1
    when that occasion is not among the rows.

    With an ``occasion`` column (the occasion's index in the participant's schedule, as the
    linking step numbers them) the previous occasion is ``occasion − 1``; without it, it is the
    next lower of ``waves`` (every wave of the study, so a row removed or missed leaves a gap).
    """
    if "occasion" in data.columns and data["occasion"].notna().any():
        position = pd.to_numeric(data["occasion"], errors="coerce").to_numpy(dtype=float)
    else:
        order = sorted({float(w) for w in waves if pd.notna(w)})
        rank = pd.Series(np.arange(len(order)), index=order)
        position = data["wave"].astype(float).map(rank).to_numpy(dtype=float)
    codes, _ = pd.factorize(data[GROUPS])
    stride = int(np.nanmax(position)) + 2 if np.isfinite(position).any() else 1
    valid = ~np.isnan(position) & (codes >= 0)
    keys = np.where(valid, codes * stride + np.nan_to_num(position), -1).astype(np.int64)
    # The last row wins when a participant has two rows at one occasion (as in linking).
    lookup = pd.Series(np.arange(len(data)), index=keys)[valid]
    lookup = lookup[~lookup.index.duplicated(keep="last")]
    wanted = np.where(valid & (position > 0), keys - 1, -1)
    found = lookup.reindex(wanted).to_numpy(dtype=float)
    return np.where(np.isnan(found), -1, found).astype(np.int64)


def relag(data: pd.DataFrame, waves: Sequence[float]) -> pd.DataFrame:
    """Recompute every ``<c>_lag`` column whose ``<c>`` is present: the value of ``c`` at the
    participant's previous scheduled occasion (:func:`previous_positions`), NaN when that
    occasion is not among the rows. Called after rows were removed (baseline) or outcomes
    filled in (imputation), so a lag never refers to a row the analysis no longer has."""
    lags = [c for c in data.columns if c.endswith("_lag") and c[:-4] in data.columns]
    if not lags or "wave" not in data.columns:
        return data
    prev = previous_positions(data, waves)
    out = data.copy()
    for column in lags:
        values = out[column[:-4]].to_numpy(dtype=float)
        out[column] = np.where(prev >= 0, values[np.maximum(prev, 0)], np.nan)
    return out


def slim(data: pd.DataFrame, *formulas: str) -> pd.DataFrame:
    """Only the columns the formulas need (with the bases of derived and lagged columns), so the
    many copies the analyses make stay small."""
    wanted = [GROUPS, "wave", "occasion"]
    for formula in formulas:
        for column in parse_formula(formula).columns:
            wanted.append(column)
            base = _derived_base(column)
            if base is not None:
                wanted.append(base)
                column = base
            if column.endswith("_lag"):
                wanted.append(column[:-4])
    return data[[c for c in dict.fromkeys(wanted) if c in data.columns]]


# ---------------------------------------------------------------------------------------------
# Fitting one model and reporting the primary term
# ---------------------------------------------------------------------------------------------


def _fit(data: pd.DataFrame, formula: str, re_formula: str) -> MixedLMResult:
    columns = [c for c in _formula_columns(formula, re_formula) if c not in data.columns]
    if columns:
        raise _Skip(f"no column {columns[0]!r}")
    needed = [*_formula_columns(formula, re_formula), GROUPS]
    n_groups = int(data.dropna(subset=needed)[GROUPS].nunique())
    if n_groups < MIN_GROUPS:
        raise _Skip(f"too few participants with complete data ({n_groups} < {MIN_GROUPS})")
    return fit_mixedlm(formula, data, GROUPS, re_formula)


def _term_entry(fit: MixedLMResult, term: str) -> dict[str, Any]:
    if term not in fit.fixed:
        raise _Skip(f"the model has no term {term!r}")
    fe = fit.fixed[term]
    return {
        "term": term,
        "estimate": _num(fe.estimate),
        "se": _num(fe.se),
        "ci_low": _num(fe.ci_low),
        "ci_high": _num(fe.ci_high),
        "p": _num(fe.p),
        "df": _num(fe.df),
        "n_obs": fit.n_obs,
        "n_groups": fit.n_groups,
        "re_formula": fit.re_formula,
        "converged": bool(fit.converged),
        "singular": bool(fit.singular),
    }


def _compact(re_formula: str) -> tuple[bool, tuple[str, ...]]:
    """A random-effect formula up to spelling: ``~ 1 + x`` and ``~x`` are the same."""
    parsed = parse_formula(re_formula)
    return parsed.intercept, tuple(sorted(":".join(f.label for f in t) for t in parsed.terms))


def _is_intercept_only(re_formula: str) -> bool:
    return _compact(re_formula) == (True, ())


def _fit_with_fallback(data: pd.DataFrame, formula: str, re_formula: str) -> MixedLMResult:
    """The primary's random effects; a random intercept when the data cannot identify them."""
    try:
        return _fit(data, formula, re_formula)
    except UnidentifiableModelError:
        if _is_intercept_only(re_formula):
            raise
        return _fit(data, formula, "~1")


# ---------------------------------------------------------------------------------------------
# The analyses
# ---------------------------------------------------------------------------------------------


# How the primary model's rows and terms are built from a linked-like table:
# prepare(data, outcome, model, recompute) -> (frame, formula).
Prepare = Callable[[pd.DataFrame, str, Mapping[str, Any], bool], tuple[pd.DataFrame, str]]


def preparer(plan: Mapping[str, Any], model_key: str) -> Prepare:
    """The plan module's own model-frame builder when it has one for this model (usage
    transform, centring over the modelled rows, time model, exactly as the primary was fitted),
    else the model dict's formula with :func:`centre`."""
    model_frame = getattr(plan_module, "model_frame", None)
    keys = {getattr(plan_module, "PRIMARY_MODEL", None): True}
    keys[getattr(plan_module, "SECONDARY_MODEL", None)] = False
    if callable(model_frame) and model_key in keys and model_key is not None:
        lagged = keys[model_key]

        def from_plan(
            data: pd.DataFrame, outcome: str, model: Mapping[str, Any], recompute: bool
        ) -> tuple[pd.DataFrame, str]:
            frame, formula, _info = model_frame(data, outcome, plan, lagged=lagged)
            return frame, formula

        return from_plan

    def from_formula(
        data: pd.DataFrame, outcome: str, model: Mapping[str, Any], recompute: bool
    ) -> tuple[pd.DataFrame, str]:
        formula, re_formula = model["formula"], model["re_formula"]
        data = slim(data, formula, re_formula)
        return centre(data, formula, re_formula, recompute=recompute), formula

    return from_formula


def _exclude_baseline(
    linked: pd.DataFrame, outcome: str, model: Mapping[str, Any], term: str, prepare: Prepare
) -> dict[str, Any]:
    if "wave" not in linked.columns or linked["wave"].notna().sum() == 0:
        raise _Skip("the table has no wave column")
    waves = linked["wave"].dropna().unique()
    baseline = float(np.min(waves))
    data = relag(linked[linked["wave"] != baseline], waves)
    frame, formula = prepare(data, outcome, model, True)
    fit = _fit_with_fallback(frame, formula, model["re_formula"])
    entry = _term_entry(fit, term)
    entry["rows_removed"] = int((linked["wave"] == baseline).sum())
    primary = ((model.get("fixed") or {}).get(term) or {}).get("estimate")
    if (
        fit.n_obs == model.get("n_obs")
        and primary is not None
        and math.isclose(fit.fixed[term].estimate, primary, rel_tol=1e-6)
    ):
        # E.g. a lagged model whose baseline usage window precedes enrolment: no row of the
        # primary used the baseline, and the report should say so rather than look like a
        # confirmation.
        entry["note"] = "same rows and estimate as the primary: it does not use the baseline"
    return entry


def _alternative_re(
    linked: pd.DataFrame,
    outcome: str,
    model: Mapping[str, Any],
    term: str,
    re_formula: str,
    prepare: Prepare,
) -> dict[str, Any]:
    frame, formula = prepare(linked, outcome, model, False)
    return _term_entry(_fit(frame, formula, re_formula), term)


def _robust(
    linked: pd.DataFrame, outcome: str, model: Mapping[str, Any], term: str, prepare: Prepare
) -> dict[str, Any]:
    frame, formula = prepare(linked, outcome, model, False)
    fit = _fit(frame, formula, model["re_formula"])
    robust = mixed_cluster_robust(fit, frame)
    if term not in robust.coefficients:
        raise _Skip(f"the model has no term {term!r}")
    rc = robust.coefficients[term]
    return {
        "term": term,
        "estimate": _num(rc.estimate),
        "se": _num(rc.se),
        "ci_low": _num(rc.ci_low),
        "ci_high": _num(rc.ci_high),
        "p": _num(rc.p),
        "df": _num(rc.df),
        "model_se": _num(fit.fixed[term].se),
        "n_obs": robust.n_obs,
        "n_groups": robust.n_clusters,
        "re_formula": fit.re_formula,
    }


def _time_column(linked: pd.DataFrame, formula: str) -> str:
    """The numeric time the primary model uses, for a random slope on time."""
    columns = parse_formula(formula).columns
    for name in ("weeks", "time", "wave"):
        if name in columns and name in linked and pd.api.types.is_numeric_dtype(linked[name]):
            return name
    return "wave"


# ---------------------------------------------------------------------------------------------
# Delta-adjusted multiple imputation
# ---------------------------------------------------------------------------------------------


def higher_is_better(outcome: str, plan: Mapping[str, Any]) -> bool:
    declared = plan.get("higher_is_better") or {}
    if outcome in declared:
        return bool(declared[outcome])
    instrument = outcome.split(".", 1)[0]
    if instrument in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[instrument]
    raise _Skip(
        f"which direction of {outcome!r} is unfavourable is unknown: set "
        f"analysis.higher_is_better.{outcome} to true or false"
    )


def _imputation_formula(formula: str, outcome: str) -> str:
    """The analysis formula without terms built from the outcome itself (its lag is missing
    exactly where the outcome is)."""
    parsed = parse_formula(formula)
    keep = [
        ":".join(f.label for f in term)
        for term in parsed.terms
        if not any(f.column.startswith(outcome) for f in term)
    ]
    rhs = " + ".join(keep) if keep else "1"
    return f"{outcome} ~ {rhs}" if parsed.intercept else f"{outcome} ~ 0 + {rhs}"


def _with_intercept(re_formula: str) -> str:
    parsed = parse_formula(re_formula)
    if parsed.intercept:
        return re_formula
    labels = [":".join(f.label for f in term) for term in parsed.terms]
    return "~ " + " + ".join(["1", *labels])


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return vectors * np.sqrt(np.clip(values, 0.0, None))[None, :]


def _impute(
    data: pd.DataFrame,
    outcome: str,
    imp_formula: str,
    re_formula: str,
    *,
    m: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """MAR imputations of the missed follow-up outcomes: (row labels of ``data``, m × n draws).

    ``data`` has the imputation model's terms built over every row with usage, answered or not.

    Approximately proper (Rubin 1987, ch. 5): per imputation σ² is drawn from its scaled
    inverse χ², β from its sampling distribution given σ², each participant's random effects
    from their conditional distribution given their observed outcomes and the drawn β, and a
    residual is added. The relative random-effect covariance is held at its estimate.
    """
    # Always with a random intercept: without the outcome's lag in the imputation model, the
    # intercept is what carries a person's level into their imputed answers.
    fit = _fit_with_fallback(data, imp_formula, _with_intercept(re_formula))
    fixed_f = parse_formula(imp_formula)
    re_f = parse_formula(fit.re_formula)
    predictors = [c for c in fixed_f.columns if c != outcome] + re_f.columns + [GROUPS]
    usable = data[predictors].notna().all(axis=1).to_numpy()
    frame = data.loc[usable]
    X, names = model_matrix(fixed_f, frame)
    Z, _ = model_matrix(re_f, frame)
    # A time level nobody answered at has no estimate: such rows stay missing.
    extra = [j for j, name in enumerate(names) if name not in fit.fixed_names]
    X_fit = X[:, [names.index(n) for n in fit.fixed_names]]
    y = frame[outcome].to_numpy(dtype=float)
    observed = ~np.isnan(y)
    baseline = float(np.nanmin(data["wave"])) if "wave" in data else -np.inf
    target = (~observed) & (frame["wave"].to_numpy(dtype=float) > baseline)
    if extra:
        target &= ~np.any(X[:, extra] != 0, axis=1)
    positions = data.index.to_numpy()[np.flatnonzero(usable)[target]]
    if positions.size == 0:
        return positions, np.empty((m, 0))

    codes, _ = pd.factorize(frame[GROUPS])
    n_groups = int(codes.max()) + 1
    q = Z.shape[1]
    sigma2 = fit.residual_sd**2
    lam = _sqrt_psd(fit.random_cov / sigma2)
    beta_hat = np.array([fit.fixed[n].estimate for n in fit.fixed_names])
    chol_beta = _sqrt_psd(fit.fixed_cov / sigma2)  # sampling covariance per unit σ²
    dof = max(fit.n_obs - len(beta_hat), 1)
    # Per-participant ZᵢᵀZᵢ over observed rows (fixed across imputations).
    Zo, co = Z[observed], codes[observed]
    ZtZ = np.zeros((n_groups, q, q))
    np.add.at(ZtZ, co, Zo[:, :, None] * Zo[:, None, :])
    Mi = np.linalg.inv(lam.T @ ZtZ @ lam + np.eye(q))  # (ΛᵀZᵢᵀZᵢΛ + I)⁻¹
    cond_cov_unit = lam @ Mi @ lam.T  # Cov(bᵢ | yᵢ) / σ², (G, q, q)
    cond_chol = np.stack([_sqrt_psd(c) for c in cond_cov_unit])
    Xt, Zt, ct = X_fit[target], Z[target], codes[target]
    draws = np.empty((m, positions.size))
    for k in range(m):
        sigma2_k = sigma2 * dof / rng.chisquare(dof)
        beta_k = beta_hat + math.sqrt(sigma2_k) * chol_beta @ rng.standard_normal(beta_hat.size)
        resid = y[observed] - X_fit[observed] @ beta_k
        Ztr = np.zeros((n_groups, q))
        np.add.at(Ztr, co, Zo * resid[:, None])
        mean = (cond_cov_unit @ Ztr[:, :, None])[:, :, 0]
        b = (
            mean
            + math.sqrt(sigma2_k) * (cond_chol @ rng.standard_normal((n_groups, q, 1)))[:, :, 0]
        )
        noise = rng.normal(0.0, math.sqrt(sigma2_k), size=positions.size)
        draws[k] = Xt @ beta_k + (Zt * b[ct]).sum(axis=1) + noise
    return positions, draws


class _FixedThetaRefit:
    """Refits of ``reference`` on completed data sets that differ only in the outcome.

    The variance parameters (θ) of ``reference`` are held fixed and β, σ² re-estimated (GLS).
    The rows, the random-effect design and every predictor that does not depend on the outcome
    are the same in every completed data set, so they are built once from ``frame`` (a
    prepared completed data set); only the outcome and columns built from it (its lag, and the
    lag's person-mean parts) are recomputed, with numpy, per data set.
    """

    def __init__(
        self, frame: pd.DataFrame, reference: MixedLMResult, outcome: str, prev: np.ndarray
    ) -> None:
        self.reference = reference
        self.outcome = outcome
        self.fixed_f = parse_formula(reference.formula)
        re_f = parse_formula(reference.re_formula)
        kept = complete_rows(frame, [*self.fixed_f.columns, *re_f.columns, GROUPS])
        # Row labels of the prepared frame are positions in the occasion grid (a RangeIndex).
        self.rows = frame.index.to_numpy()[kept]
        self.part = frame.loc[kept].copy()
        self.X, names = model_matrix(self.fixed_f, self.part)
        if names != reference.fixed_names:
            raise _Skip("a completed data set gives a different design")
        self.Z, _ = model_matrix(re_f, self.part)
        self.codes, uniques = pd.factorize(self.part[GROUPS], sort=True)
        self.n_groups = len(uniques)
        self.prev = prev
        # Predictors computed from the outcome: its lag, and the lag's within/between parts.
        self.dependent = []
        for column in self.fixed_f.columns[1:]:
            base = _derived_base(column) or column
            if base != outcome and base.startswith(outcome):
                self.dependent.append((column, base))
        self.reml = reference.method == "REML"
        # A lagged model of the change since the previous occasion (y(t) − y(t−1), the plan's
        # default "lagged_outcome: change") has a response built from the outcome too: it is
        # recomputed from the completed outcome, else the refit would model the level.
        self.change = self.fixed_f.response == f"{outcome}_change"

    def __call__(self, y_full: np.ndarray, j: int) -> tuple[float, float]:
        """Estimate and variance of fixed effect ``j`` with the outcome ``y_full`` (all rows)."""
        X = self.X
        lag = np.where(self.prev >= 0, y_full[np.maximum(self.prev, 0)], np.nan)[self.rows]
        if self.dependent:
            size = np.bincount(self.codes, minlength=self.n_groups)
            mean = (np.bincount(self.codes, weights=lag, minlength=self.n_groups) / size)[
                self.codes
            ]
            for column, _base in self.dependent:
                if column.endswith(WITHIN):
                    self.part[column] = lag - mean
                elif column.endswith(BETWEEN):
                    self.part[column] = mean
                else:
                    self.part[column] = lag
            X, _ = model_matrix(self.fixed_f, self.part)
        y = y_full[self.rows] - lag if self.change else y_full[self.rows]
        objective = ProfiledDeviance(sufficient_stats(X, y, self.Z, self.codes), reml=self.reml)
        ev = objective.evaluate(self.reference.theta, gradient=False)
        n, p = X.shape
        sigma2 = ev.pwrss / (n - p if self.reml else n)
        return float(ev.beta[j]), float(sigma2 * np.linalg.inv(ev.A)[j, j])


def _rubin(estimates: np.ndarray, variances: np.ndarray, df_complete: float) -> dict[str, Any]:
    """Rubin's rules (Rubin 1987) with the Barnard & Rubin (1999) small-sample df."""
    m = len(estimates)
    q_bar = float(np.mean(estimates))
    u_bar = float(np.mean(variances))
    b = float(np.var(estimates, ddof=1)) if m > 1 else 0.0
    total = u_bar + (1.0 + 1.0 / m) * b
    gamma = (1.0 + 1.0 / m) * b / total if total > 0 else 0.0
    if gamma > 0 and m > 1:
        df_m = (m - 1) / gamma**2
        df_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - gamma)
        df = 1.0 / (1.0 / df_m + 1.0 / df_obs)
    else:
        df = df_complete
    se = math.sqrt(total)
    t = q_bar / se if se > 0 else float("nan")
    half = float(stats.t.ppf(0.975, df)) * se if df > 0 else float("nan")
    return {
        "estimate": _num(q_bar),
        "se": _num(se),
        "ci_low": _num(q_bar - half),
        "ci_high": _num(q_bar + half),
        "p": _num(2.0 * stats.t.sf(abs(t), df)) if df > 0 else None,
        "df": _num(df),
        "fmi": _num(gamma),
    }


def _mnar(
    grid: pd.DataFrame,
    outcome: str,
    model: Mapping[str, Any],
    term: str,
    plan: Mapping[str, Any],
    deltas: Sequence[float],
    prepare: Prepare,
) -> list[dict[str, Any]]:
    """One outcome dict per δ (same imputations for every δ, so the table moves smoothly)."""
    if outcome not in grid.columns:
        raise _Skip(f"no column {outcome!r}")
    good_high = higher_is_better(outcome, plan)
    m = int(plan.get("mnar_imputations", DEFAULT_IMPUTATIONS))
    if m < 2:
        raise _Skip("mnar_imputations must be at least 2")
    if "wave" not in grid.columns:
        raise _Skip("the table has no wave column")
    re_formula = model["re_formula"]
    # Only participants with at least one observed value of this outcome are analysed.
    answered = grid[outcome].notna().groupby(grid[GROUPS]).transform("any")
    grid = grid[answered.astype(bool)].reset_index(drop=True)
    waves = grid["wave"].dropna().unique()
    grid = relag(grid, waves)
    sd = float(grid[outcome].std(ddof=1))
    if not sd > 0:
        raise _Skip("the outcome does not vary")
    prev = previous_positions(grid, waves)
    outcome_lags = [c for c in grid.columns if c == f"{outcome}_lag"]
    observed = grid[outcome].to_numpy(dtype=float)

    def with_outcome(y: np.ndarray) -> pd.DataFrame:
        frame = grid.copy()
        frame[outcome] = y
        for column in outcome_lags:
            frame[column] = np.where(prev >= 0, y[np.maximum(prev, 0)], np.nan)
        return frame

    # The imputation model's terms are built over every row with usage, answered or not: a
    # placeholder outcome keeps the unanswered rows in the frame, and is removed again (the
    # terms built from the outcome itself are not in the imputation formula).
    frame, formula = prepare(with_outcome(np.nan_to_num(observed)), outcome, model, True)
    frame = frame.copy()
    frame[outcome] = observed[frame.index.to_numpy()]
    seed = int(plan.get("mnar_seed", DEFAULT_SEED))
    # A seed per outcome (stable across runs and across the order of outcomes).
    rng = np.random.default_rng([seed, *outcome.encode()])
    imp_formula = _imputation_formula(formula, outcome)
    positions, draws = _impute(frame, outcome, imp_formula, re_formula, m=m, rng=rng)
    sign = -1.0 if good_high else 1.0

    def completed(values: np.ndarray) -> np.ndarray:
        y = observed.copy()
        y[positions] = values
        return y

    # The variance parameters come from one full fit (first completed data set under MAR) and
    # are held there; β and σ² are re-estimated in every completed data set by GLS. Why: a full
    # fit per data set (m × len(δ) of them) would add seconds to every report, and δ moves the
    # fixed effects far more than the variance ratios.
    first, formula = prepare(with_outcome(completed(draws[0])), outcome, model, True)
    reference = _fit_with_fallback(first, formula, re_formula)
    if term not in reference.fixed:
        raise _Skip(f"the model has no term {term!r}")
    j = reference.fixed_names.index(term)
    refit = _FixedThetaRefit(first, reference, outcome, prev)
    out = []
    for delta in deltas:
        shift = sign * delta * sd
        estimates, variances = [], []
        for k in range(m):
            estimate, variance = refit(completed(draws[k] + shift), j)
            estimates.append(estimate)
            variances.append(variance)
        pooled = _rubin(np.array(estimates), np.array(variances), reference.fixed[term].df)
        out.append(
            {
                "term": term,
                **pooled,
                "n_obs": reference.n_obs,
                "n_groups": reference.n_groups,
                "delta_sd": float(delta),
                "delta": _num(shift),
                "direction": "lower" if good_high else "higher",
                "m": m,
                "n_imputed": int(positions.size),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Occasion grid (observed and missed occasions, with usage)
# ---------------------------------------------------------------------------------------------


def occasion_grid(
    link: Callable[[pd.DataFrame], pd.DataFrame],
    responses: pd.DataFrame,
    invitations: pd.DataFrame,
) -> pd.DataFrame:
    """The linked table with one more row per missed follow-up occasion (outcomes NaN).

    A missed occasion is an invitation that ``expired`` or was ``cancelled`` (withdrawal) for
    an entry whose responses are analysed, of a participant who answered at least one survey.
    Its usage window ends at the scheduled opening instead of a submission. ``link`` is the
    pipeline's linking call (same window, predictors and transforms as the real table), applied
    to the responses plus one placeholder response per missed occasion.
    """
    for column in ("participant", "entry", "occurrence", "status", "opens_at"):
        if column not in invitations.columns:
            raise ValueError(f"invitations frame is missing column {column!r}")
    missed = invitations[
        invitations["status"].isin(MISSED_STATUSES)
        & invitations["entry"].isin(set(responses["entry"]))
        & invitations["participant"].isin(set(responses["participant"]))
        & invitations["opens_at"].notna()
    ]
    keys = ["participant", "entry", "occurrence"]
    answered = pd.MultiIndex.from_frame(responses[keys].drop_duplicates())
    missed = missed[~pd.MultiIndex.from_frame(missed[keys]).isin(answered)]
    placeholder = pd.DataFrame(
        {
            "participant": missed["participant"].to_numpy(),
            "entry": missed["entry"].to_numpy(),
            "occurrence": missed["occurrence"].to_numpy(),
            "opens_at": missed["opens_at"].to_numpy(),
            "submitted_at": missed["opens_at"].to_numpy(),
            "instrument": MISSED,
            "scores": [{"flag": 1}] * len(missed),
        }
    )
    if "wave" in responses.columns and "wave" in missed.columns:
        placeholder["wave"] = missed["wave"].to_numpy()
    union = pd.concat([responses, placeholder], ignore_index=True)
    grid = link(union)
    return grid.drop(columns=[c for c in grid.columns if c.startswith(f"{MISSED}.")])


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

_INTERCEPT = "~1"


def _entry(key: str, name: str, description: str, note: str = "") -> dict[str, Any]:
    return {"key": key, "name": name, "description": description, "outcomes": {}, "note": note}


def _per_outcome(
    entry: dict[str, Any],
    outcomes: Sequence[str],
    models: Mapping[str, Mapping[str, Any]],
    compute: Callable[[str, Mapping[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    for outcome in outcomes:
        model = models.get(outcome) or {}
        if "error" in model or "formula" not in model:
            entry["outcomes"][outcome] = {
                "error": "the primary model was not fitted: " + str(model.get("error", "absent"))
            }
            continue
        try:
            entry["outcomes"][outcome] = compute(outcome, model)
        except (_Skip, ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            entry["outcomes"][outcome] = {"error": str(exc).splitlines()[0] or type(exc).__name__}
    return entry


def _fail(entries: Sequence[dict[str, Any]], outcomes: Sequence[str], exc: Exception) -> None:
    """Mark entries as failed: the entry's "error", repeated on every outcome without a result
    so that a table listing outcome rows shows it too."""
    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
    for entry in entries:
        entry["error"] = message
        for outcome in outcomes:
            entry["outcomes"].setdefault(outcome, {"error": message})


def _guard(
    entry: dict[str, Any],
    outcomes: Sequence[str],
    build: Callable[[dict[str, Any]], Any],
) -> list[dict[str, Any]]:
    """Run one analysis; any failure becomes the entry's "error" instead of stopping the run."""
    try:
        result = build(entry)
    except Exception as exc:  # the report must come out even if a sensitivity analysis breaks
        _fail([entry], outcomes, exc)
        return [entry]
    return result if isinstance(result, list) else [entry]


def sensitivity_analyses(
    linked: pd.DataFrame,
    plan: Mapping[str, Any],
    results: Mapping[str, Any],
    *,
    grid: pd.DataFrame | None = None,
    grid_error: str | None = None,
) -> list[dict[str, Any]]:
    """Every sensitivity analysis of the primary term, as JSON-able entries (module docstring).

    ``grid`` is :func:`occasion_grid`'s table (observed plus missed occasions); without it the
    MNAR analysis can only fill outcomes missing on observed rows and says so in its note.
    """
    primary = results.get("primary") or {}
    term = primary.get("term")
    model_key = primary.get("model", "usage_model")
    outcomes = list((results.get("plan") or {}).get("outcomes") or plan.get("outcomes") or [])
    per_outcome = results.get("outcomes") or {}
    models = {o: (per_outcome.get(o) or {}).get(model_key) or {} for o in outcomes}
    prepare = preparer(plan, model_key)
    entries: list[dict[str, Any]] = []

    def no_term(entry: dict[str, Any]) -> list[dict[str, Any]]:
        entry["error"] = "the plan has no primary term (no predictors)"
        return [entry]

    # 1. Excluding baseline
    base = _entry(
        "exclude_baseline",
        "Excluding the baseline occasion",
        "The primary model refitted without the baseline survey: its outcome, its usage window "
        "(which mostly precedes enrolment) and any lag borrowed from it are left out, and "
        "person means are taken over the remaining rows.",
    )
    entries += _guard(
        base,
        outcomes,
        no_term
        if term is None
        else lambda e: _per_outcome(
            e, outcomes, models, lambda o, m: _exclude_baseline(linked, o, m, term, prepare)
        ),
    )
    # Per-outcome notes also in the entry's note, which is what a report prints under a table.
    notes = [f"{o}: {r['note']}." for o, r in base["outcomes"].items() if r.get("note")]
    base["note"] = " ".join([base["note"], *notes]).strip()

    # 2. Alternative random-effect structures
    first = next((m for m in models.values() if "re_formula" in m), None)
    time = _time_column(linked, first["formula"]) if first else "wave"
    usage_slope = f"~ {term}" if term else None
    alternatives = [
        ("re_intercept", "Random intercept only", _INTERCEPT),
        ("re_slope_usage", "Random slope on the primary usage term", usage_slope),
        ("re_slope_time", f"Random slope on time ({time})", f"~ {time}"),
    ]
    for key, name, re_formula in alternatives:
        entry = _entry(
            key,
            name,
            f"The primary model with random effects {re_formula} over participants instead of "
            "the primary structure; fixed effects unchanged.",
        )
        if term is None or re_formula is None:
            entries += no_term(entry)
            continue
        used = {_compact(m["re_formula"]) for m in models.values() if "re_formula" in m}
        if used == {_compact(re_formula)}:
            continue  # every primary fit already has this structure: nothing to compare

        def alt(o: str, m: Mapping[str, Any], re_formula: str = re_formula) -> dict[str, Any]:
            if _compact(m["re_formula"]) == _compact(re_formula):
                raise _Skip(f"the primary model already uses {re_formula}")
            return _alternative_re(linked, o, m, term, re_formula, prepare)

        entries += _guard(
            entry, outcomes, lambda e, alt=alt: _per_outcome(e, outcomes, models, alt)
        )

    # 3. Cluster-robust standard errors
    robust = _entry(
        "cluster_robust",
        "Cluster-robust standard errors",
        "The primary estimate with a CR2 sandwich standard error clustered by participant, "
        "valid even if the random-effect structure is wrong; t test with Bell-McCaffrey "
        "degrees of freedom.",
        note=ROBUST_METHOD,
    )
    entries += _guard(
        robust,
        outcomes,
        no_term
        if term is None
        else lambda e: _per_outcome(
            e, outcomes, models, lambda o, m: _robust(linked, o, m, term, prepare)
        ),
    )

    # 4. MNAR delta adjustment (one entry per δ)
    deltas = [float(d) for d in (plan.get("mnar_deltas") or DEFAULT_DELTAS)]
    mnar_note = (
        "Missed follow-up occasions imputed under MAR from a mixed model, shifted by δ "
        "outcome SDs in the unfavourable direction, m imputations pooled with Rubin's rules."
    )
    if grid is None:
        mnar_note += (
            " Missed occasions were not available"
            + (f" ({grid_error})" if grid_error else "")
            + ": only outcomes missing on answered occasions are filled."
        )
    data = grid if grid is not None else linked
    mnar_entries = [
        _entry(
            f"mnar_delta_{d:g}sd",
            f"Missing not at random: δ = {d:g} SD",
            "Delta-adjusted multiple imputation of missed follow-up outcomes: people who "
            f"stopped answering are assumed {d:g} SD worse than MAR predicts.",
            note=mnar_note,
        )
        for d in deltas
    ]

    def mnar(_: dict[str, Any]) -> list[dict[str, Any]]:
        if term is None:
            for e in mnar_entries:
                e["error"] = "the plan has no primary term (no predictors)"
            return mnar_entries
        for outcome in outcomes:
            model = models.get(outcome) or {}
            try:
                if "error" in model or "formula" not in model:
                    raise _Skip(
                        "the primary model was not fitted: " + str(model.get("error", "absent"))
                    )
                rows = _mnar(data, outcome, model, term, plan, deltas, prepare)
            except (_Skip, ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
                message = str(exc).splitlines()[0] or type(exc).__name__
                rows = [{"error": message}] * len(deltas)
            for e, row in zip(mnar_entries, rows, strict=True):
                e["outcomes"][outcome] = dict(row)
        return mnar_entries

    if mnar_entries:
        try:
            entries += mnar(mnar_entries[0])
        except Exception as exc:  # never stop the run for a sensitivity analysis
            _fail(mnar_entries, outcomes, exc)
            entries += mnar_entries
    return entries


def sensitivity_from_frames(
    link: Callable[[pd.DataFrame], pd.DataFrame],
    responses: pd.DataFrame,
    invitations: pd.DataFrame,
    linked: pd.DataFrame,
    plan: Mapping[str, Any],
    results: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """What :func:`analysis.pipeline.analyse` calls: builds the occasion grid with the
    pipeline's own linking call, then runs :func:`sensitivity_analyses`."""
    try:
        grid, grid_error = occasion_grid(link, responses, invitations), None
    except Exception as exc:  # without the grid the MNAR entries say what they could not do
        grid, grid_error = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return sensitivity_analyses(linked, plan, results, grid=grid, grid_error=grid_error)
