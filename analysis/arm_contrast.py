"""The arm contrast: how far apart the arms' outcome means are at the end of the study.

Pure (no Django). For each outcome of the plan, one model over the linked table (one row per
participant and survey occasion), chosen by ``plan["arm_contrast"]["method"]``:

* ``"clda"`` (default): constrained longitudinal data analysis (Liang & Zeger 2000, Sankhyā B
  62(1):134-148; Coffman, Edelman & Woolson 2016, BMJ Open 6:e013096). The baseline (wave 0)
  is an outcome occasion like the others, every wave has its own mean (time as a factor), and
  the arms differ only after baseline: the design has a column per follow-up wave and per
  non-reference arm × follow-up wave, and no arm main effect, so the arms share one baseline
  mean (true under randomisation). Participants with a baseline but no follow-up still inform
  the baseline mean and the covariance, and a participant missing the baseline still counts.
* ``"ancova"``: the follow-up occasions only, ``y ~ baseline y + arm × C(wave)`` (baseline
  adjusted; people without a baseline answer are left out).

Both adjust for the study's stratification factors (the ``stratum.<factor>`` columns the
Django side loads, :func:`analysis.data.load_study_frames`) and for the plan's ``covariates``.
Repeated occasions of a person are tied together by random effects over participants
(``plan["arm_contrast"]["random_effects"]``, default a random intercept). Model-based means per
arm and wave (covariates at their participant average) and arm differences come from linear
contrasts of the fixed effects with Satterthwaite degrees of freedom
(:meth:`analysis.stats.mixedlm.MixedLMResult.contrast`); the end-of-study contrast is the
difference between each arm and the reference arm at the last wave.

:func:`carry_participant_covariates` copies the participant-level ``screener.*`` and
``stratum.*`` columns onto every linked row, so every model of the plan can use them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.plan import fit_summary
from analysis.stats.formula import model_matrix, parse_formula
from analysis.stats.mixedlm import UnidentifiableModelError, fit_mixedlm

__all__ = [
    "COVARIATE_PREFIXES",
    "METHODS",
    "arm_contrast_settings",
    "arm_contrasts",
    "carry_participant_covariates",
    "fit_arm_contrast",
]

GROUPS = "participant"
METHODS = ("clda", "ancova", "none")
# Participant-level columns (one value per person) that the Django side loads and linking
# carries onto every row: screener answers and the allocation's stratification factors.
COVARIATE_PREFIXES = ("screener.", "stratum.")
# Fewer participants than this cannot support a variance component; same floor as plan.py.
MIN_GROUPS = 5
OLS_P_METHOD = "t (ordinary least squares, exact df)"

ESTIMANDS = {
    "clda": (
        "Difference between each arm and the reference arm in the model-based mean outcome at "
        "the last wave, all arms constrained to one baseline mean (cLDA), adjusted for the "
        "stratification factors and covariates listed."
    ),
    "ancova": (
        "Difference between each arm and the reference arm in the model-based mean outcome at "
        "the last wave among people with a baseline answer, adjusted for their baseline value, "
        "the stratification factors and covariates listed (ANCOVA)."
    ),
}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def carry_participant_covariates(linked: pd.DataFrame, participants: pd.DataFrame) -> pd.DataFrame:
    """``linked`` with every ``screener.*`` / ``stratum.*`` column of ``participants`` added.

    The values are per person, so each linked row of a participant gets the same value.
    Columns already on ``linked`` are left as they are.
    """
    columns = [
        c
        for c in participants.columns
        if c.startswith(COVARIATE_PREFIXES) and c not in linked.columns
    ]
    if not columns or "participant" not in linked.columns:
        return linked
    by_person = participants.drop_duplicates("participant").set_index("participant")[columns]
    out = linked.copy()
    for column in columns:
        out[column] = out["participant"].map(by_person[column])
    return out


def arm_contrast_settings(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The plan's ``arm_contrast`` section with its defaults filled in."""
    section = dict(plan.get("arm_contrast") or {})
    return {
        "method": section.get("method", "clda"),
        "reference": section.get("reference"),
        "end_wave": section.get("end_wave"),
        "random_effects": section.get("random_effects") or "~1",
        "adjust_strata": bool(section.get("adjust_strata", True)),
    }


def _wave_label(value: float) -> str:
    return f"{value:g}"


class _OLSFit:
    """Enough of a fit for contrasts when every person has one row (no random effect to fit)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, names: list[str]) -> None:
        n, p = X.shape
        xtx_inv = np.linalg.inv(X.T @ X)
        self.beta = xtx_inv @ X.T @ y
        resid = y - X @ self.beta
        self.df_resid = n - p
        sigma2 = float(resid @ resid) / self.df_resid
        self.cov = sigma2 * xtx_inv
        self.names = names
        self.n = n
        self.sigma = math.sqrt(sigma2)

    def contrast(self, L: np.ndarray) -> dict[str, float]:
        estimate = float(L @ self.beta)
        se = math.sqrt(max(float(L @ self.cov @ L), 0.0))
        return _t_summary(estimate, se, float(self.df_resid))


def _t_summary(estimate: float, se: float, df: float) -> dict[str, float]:
    if not (se > 0 and df > 0 and math.isfinite(df)):
        nan = float("nan")
        return {"estimate": estimate, "se": se, "df": df, "t": nan, "p": nan, "lo": nan, "hi": nan}
    t = estimate / se
    half = float(stats.t.ppf(0.975, df)) * se
    return {
        "estimate": estimate,
        "se": se,
        "df": df,
        "t": t,
        "p": float(2.0 * stats.t.sf(abs(t), df)),
        "lo": estimate - half,
        "hi": estimate + half,
    }


def _row(test: Mapping[str, float]) -> dict[str, float | None]:
    return {
        "estimate": _num(test["estimate"]),
        "se": _num(test["se"]),
        "df": _num(test["df"]),
        "t": _num(test["t"]),
        "p": _num(test["p"]),
        "ci_low": _num(test["lo"]),
        "ci_high": _num(test["hi"]),
    }


def _usable_covariates(
    frame: pd.DataFrame, names: Sequence[str]
) -> tuple[list[str], list[dict[str, str]]]:
    """Covariates that can enter the model; the others with the reason they cannot."""
    kept, dropped = [], []
    for name in names:
        if name not in frame.columns:
            dropped.append({"name": name, "reason": "no such column in the linked data"})
        elif frame[name].nunique(dropna=True) < 2:
            dropped.append({"name": name, "reason": "takes a single value in these data"})
        else:
            kept.append(name)
    return kept, dropped


def fit_arm_contrast(
    linked: pd.DataFrame,
    outcome: str,
    *,
    method: str = "clda",
    reference: str | None = None,
    end_wave: float | None = None,
    covariates: Sequence[str] = (),
    strata: Sequence[str] = (),
    random_effects: str = "~1",
) -> dict[str, Any]:
    """The arm contrast for one outcome as a JSON-able dict (``"error"`` when not estimable)."""
    if method not in ("clda", "ancova"):
        raise ValueError(f"arm_contrast.method must be clda or ancova, not {method!r}")
    head: dict[str, Any] = {"method": method, "estimand": ESTIMANDS[method], "outcome": outcome}
    for column in (outcome, "arm", "wave", GROUPS):
        if column not in linked.columns:
            return {**head, "error": f"no column {column!r} in the linked data"}
    frame = linked.dropna(subset=[GROUPS, "arm", "wave", outcome]).copy()
    frame["wave"] = pd.to_numeric(frame["wave"]).astype(float)
    wanted = list(dict.fromkeys([*strata, *covariates]))
    usable, dropped = _usable_covariates(frame, wanted)
    frame = frame.dropna(subset=usable)
    usable, more_dropped = _usable_covariates(frame, usable)
    dropped += more_dropped
    arms = sorted(str(a) for a in frame["arm"].unique())
    head.update(
        {
            "covariates": [c for c in usable if c not in strata],
            "strata": [c for c in usable if c in strata],
            "dropped_covariates": dropped,
        }
    )
    if len(arms) < 2:
        return {**head, "error": f"{len(arms)} arm(s) with data; a contrast needs two"}
    if reference is None:
        reference = arms[0]
    if reference not in arms:
        return {**head, "error": f"reference arm {reference!r} has no data (arms: {arms})"}
    others = [a for a in arms if a != reference]
    head.update({"reference": reference, "arms": [reference, *others]})

    has_baseline = bool((frame["wave"] == 0).any())
    if not has_baseline:
        return {**head, "error": "no baseline (wave 0) answers: the contrast needs a baseline"}
    if method == "ancova":
        base = (
            frame[frame["wave"] == 0]
            .sort_values("submitted_at" if "submitted_at" in frame else "wave")
            .drop_duplicates(GROUPS, keep="first")
            .set_index(GROUPS)[outcome]
        )
        frame = frame[frame["wave"] > 0].copy()
        frame["baseline"] = frame[GROUPS].map(base)
        frame = frame.dropna(subset=["baseline"])
    # A follow-up wave enters the model only when every arm has answers at it; otherwise the
    # arm difference at that wave is not estimable (its column would be all zero).
    follow = sorted(w for w in frame["wave"].unique() if w > 0)
    kept_waves = [w for w in follow if frame.loc[frame["wave"] == w, "arm"].nunique() == len(arms)]
    skipped = [_wave_label(w) for w in follow if w not in kept_waves]
    if not kept_waves:
        return {**head, "error": "no follow-up wave with answers from every arm"}
    end, error = _end_wave(kept_waves, end_wave, "answers from every arm")
    if error:
        return {**head, "error": error}
    frame = frame[frame["wave"].isin([0.0, *kept_waves] if method == "clda" else kept_waves)]
    n_groups = int(frame[GROUPS].nunique())
    if n_groups < MIN_GROUPS:
        return {
            **head,
            "error": f"too few participants with complete data ({n_groups} < {MIN_GROUPS})",
        }
    # cLDA: baseline is the reference occasion. ANCOVA: the first follow-up wave is.
    return _cell_means_model(
        frame.reset_index(drop=True),
        outcome,
        head={**head, "end_wave": _num(end), "waves_skipped": skipped},
        reference=reference,
        others=others,
        waves=kept_waves,
        own_mean_waves=kept_waves if method == "clda" else kept_waves[1:],
        mean_waves=([0.0] if method == "clda" else []) + kept_waves,
        leading_terms=["baseline"] if method == "ancova" else [],
        covariates=usable,
        random_effects=random_effects,
        end=end,
    )


def _end_wave(kept: Sequence[float], end_wave: float | None, what: str) -> tuple[float, str | None]:
    """The end-of-study wave (the plan's, or the last usable one), or an error naming the
    usable waves when the plan's has no ``what`` (e.g. "answers from every arm")."""
    if end_wave is None:
        return kept[-1], None
    if float(end_wave) in kept:
        return float(end_wave), None
    usable = ", ".join(_wave_label(w) for w in kept)
    return kept[-1], f"end_wave {end_wave} has no {what} (usable waves: {usable})"


def _test(fit: Any, L: np.ndarray) -> dict[str, float]:
    """The linear contrast ``L`` of the fixed effects, as a plain dict, for either kind of fit."""
    if isinstance(fit, _OLSFit):
        return fit.contrast(L)
    c = fit.contrast(L)
    return {
        "estimate": c.estimate,
        "se": c.se,
        "df": c.df,
        "t": c.t,
        "p": c.p,
        "lo": c.ci_low,
        "hi": c.ci_high,
    }


def _cell_means_model(
    frame: pd.DataFrame,
    outcome: str,
    *,
    head: dict[str, Any],
    reference: str,
    others: Sequence[str],
    waves: Sequence[float],
    own_mean_waves: Sequence[float],
    mean_waves: Sequence[float],
    leading_terms: Sequence[str],
    covariates: Sequence[str],
    random_effects: str,
    end: float,
) -> dict[str, Any]:
    """Fit ``outcome ~ leading terms + wave columns + arm × wave cells + covariates`` and
    report the model-based means per arm and wave and each arm's difference from the
    reference at every wave (the arm contrast's shape, shared by every arm × wave model).

    ``waves`` get an arm × wave cell per non-reference arm; ``own_mean_waves`` (a subset) get
    their own wave column, the others share the intercept's occasion; ``mean_waves`` are the
    occasions the model-based means are reported at.
    """
    # Explicit indicator columns (names safe for the formula parser), renamed for the report.
    labels: dict[str, str] = {}
    wave_cols: dict[float, str] = {}
    cell_cols: dict[tuple[str, float], str] = {}
    for i, w in enumerate(waves):
        if w in own_mean_waves:
            wave_cols[w] = f"_w{i}"
            frame[f"_w{i}"] = (frame["wave"] == w).astype(float)
            labels[f"_w{i}"] = f"wave[{_wave_label(w)}]"
        for j, arm in enumerate(others):
            name = f"_a{j}_w{i}"
            cell_cols[(arm, w)] = name
            frame[name] = ((frame["wave"] == w) & (frame["arm"] == arm)).astype(float)
            labels[name] = f"arm[{arm}]:wave[{_wave_label(w)}]"
    terms = [*leading_terms, *wave_cols.values(), *cell_cols.values(), *covariates]
    formula = f"{outcome} ~ " + " + ".join(terms)
    X, names = model_matrix(parse_formula(formula), frame)

    fit, summary, p_method = _fit(frame, formula, random_effects, X, names, outcome)
    if fit is None:
        return {**head, **summary}
    summary["fixed"] = {labels.get(k, k): v for k, v in summary["fixed"].items()}

    # Covariates at their average over participants (each person once), baseline likewise.
    person_first = pd.Series(np.arange(len(frame))).groupby(frame[GROUPS].to_numpy()).first()
    average = X[person_first.to_numpy()].mean(axis=0)
    index = {name: k for k, name in enumerate(names)}
    design_only = {"Intercept", *wave_cols.values(), *cell_cols.values()}

    def vector(arm: str, wave: float) -> np.ndarray:
        L = np.zeros(len(names))
        for name, k in index.items():
            if name not in design_only:
                L[k] = average[k]
        L[index["Intercept"]] = 1.0
        if wave in wave_cols:
            L[index[wave_cols[wave]]] = 1.0
        if (arm, wave) in cell_cols:
            L[index[cell_cols[(arm, wave)]]] = 1.0
        return L

    means = [
        {"arm": arm, "wave": _num(w), **_row(_test(fit, vector(arm, w)))}
        for arm in [reference, *others]
        for w in mean_waves
    ]
    differences = []
    for arm in others:
        for w in waves:
            L = np.zeros(len(names))
            L[index[cell_cols[(arm, w)]]] = 1.0
            differences.append(
                {"arm": arm, "reference": reference, "wave": _num(w), **_row(_test(fit, L))}
            )
    observed = (
        frame.groupby(["arm", "wave"])[outcome]
        .agg(["size", "mean"])
        .reset_index()
        .rename(columns={"size": "n"})
    )
    return {
        **head,
        "p_method": p_method,
        "waves": [_num(w) for w in mean_waves],
        "n_obs": len(frame),
        "n_groups": int(frame[GROUPS].nunique()),
        "model": summary,
        "means": means,
        "differences": differences,
        "end_of_study": [dict(d, end_of_study=True) for d in differences if d["wave"] == end],
        "observed": [
            {"arm": str(r.arm), "wave": _num(r.wave), "n": int(r.n), "mean": _num(r.mean)}
            for r in observed.itertuples(index=False)
        ],
    }


def _fit(
    frame: pd.DataFrame,
    formula: str,
    random_effects: str,
    X: np.ndarray,
    names: list[str],
    outcome: str,
) -> tuple[Any, dict[str, Any], str]:
    """A mixed model (falling back to a random intercept, then to OLS when every person has a
    single row, as in an ANCOVA with one follow-up wave)."""
    attempts = [random_effects]
    if random_effects.replace(" ", "") not in ("~1", ""):
        attempts.append("~1")
    reasons: list[str] = []
    for re_f in attempts:
        try:
            result = fit_mixedlm(formula, frame, GROUPS, re_f)
        except UnidentifiableModelError as exc:
            reasons.append(f"{re_f}: {exc}")
            continue
        except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            return None, {"error": f"{re_f}: {exc}"}, ""
        summary = fit_summary(result)
        if reasons:
            summary["fallback_from"] = random_effects
            summary["fallback_reason"] = reasons[0]
        return result, summary, result.p_method
    if frame[GROUPS].is_unique:
        # One row per person: no random effect to estimate, so ordinary least squares is the
        # exact model (and its t test has exact df n - p).
        y = frame[outcome].to_numpy(dtype=float)
        if X.shape[0] <= X.shape[1]:
            return None, {"error": f"{X.shape[0]} rows for {X.shape[1]} coefficients"}, ""
        fit = _OLSFit(X, y, names)
        fixed = {}
        for k, name in enumerate(names):
            L = np.zeros(len(names))
            L[k] = 1.0
            fixed[name] = _row(fit.contrast(L))
        summary = {
            "formula": formula,
            "re_formula": None,
            "method": "OLS",
            "p_method": OLS_P_METHOD,
            "fixed": fixed,
            "variance_components": {"random_sd": {}, "random_corr": {}, "residual_sd": fit.sigma},
            "n_obs": fit.n,
            "n_groups": fit.n,
            "converged": True,
            "singular": False,
            "fallback_from": random_effects,
            "fallback_reason": reasons[-1],
        }
        return fit, summary, OLS_P_METHOD
    return None, {"error": "; ".join(reasons)}, ""


def arm_contrasts(linked: pd.DataFrame, plan: Mapping[str, Any]) -> dict[str, Any]:
    """``results["arm_contrast"]``: one entry per outcome, or ``{}`` for a single-arm study or
    a plan with ``arm_contrast.method: none``."""
    settings = arm_contrast_settings(plan)
    if settings["method"] == "none" or "arm" not in linked.columns:
        return {}
    if linked["arm"].dropna().nunique() < 2:
        return {}
    strata = (
        sorted(c for c in linked.columns if c.startswith("stratum."))
        if settings["adjust_strata"]
        else []
    )
    covariates = [c for c in plan.get("covariates", []) or [] if c not in strata]
    contrasts = {}
    for outcome in plan.get("outcomes", []):
        try:
            contrasts[outcome] = fit_arm_contrast(
                linked,
                outcome,
                method=settings["method"],
                reference=settings["reference"],
                end_wave=settings["end_wave"],
                covariates=covariates,
                strata=strata,
                random_effects=settings["random_effects"],
            )
        except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            # e.g. an outcome name the formula parser refuses: reported, never a failed run
            contrasts[outcome] = {
                "method": settings["method"],
                "estimand": ESTIMANDS[settings["method"]],
                "outcome": outcome,
                "error": str(exc),
            }
    return contrasts
