"""Factorial analysis: main effects of each factor and their interaction at the end of the study.

Pure (no Django). In a factorial protocol every arm is a cell (a combination of factor levels,
``studyplatform/studies/protocol/factors.py``). The plan asks for the analysis by factor name::

    analysis:
      factorial: {factors: [modality, task], interaction: true}

For each outcome, one longitudinal mixed model over the linked table, built like the arm
contrast's cLDA (:mod:`analysis.arm_contrast`): the baseline (wave 0) is an occasion like the
others, each follow-up wave has its own mean, and the factors act only after baseline (the
cells share one baseline mean, true under randomisation). The factors enter with **effect
(sum-to-zero) coding**: a factor with k levels has k - 1 columns, level j coded 1, the last level
-1, the others 0, each crossed with every follow-up wave; the interaction columns are the
products of the factors' columns. With effect coding a main effect is the average over the
other factor's levels (not the effect at a reference level, which treatment coding would
give), which is what a factorial trial's main effect means, and the main effects stay the same
whether or not the interaction is in the model when the cells are balanced.

Reported at the end wave (the last follow-up wave every cell answered, or ``end_wave`` of the
arm-contrast settings):

* per factor, each level's effect (its deviation from the grand mean; the last level's is minus
  the sum of the others), each level's difference from the first level, and a joint test that
  all of the factor's levels are equal (an F test; one numerator df for a two-level factor,
  where F = t²);
* per interaction, each effect-coded interaction coefficient, and the joint F test.

A classifier-rate outcome (``cls_<key>_rate``, :mod:`analysis.classifier_outcomes`) has no
pre-randomisation baseline (there were no conversations to label before enrolment), so its model
is the same without the baseline occasion: over the follow-up waves only, the first follow-up
wave's mean as the intercept, each later wave its own shift, and the factors' columns crossed
with every follow-up wave, as in the classifier-rate arm contrast.

Every t test and CI is a Satterthwaite t (as the arm contrast); the joint F tests take their
denominator df from the Satterthwaite df of the contrast's eigen-directions (Kuznetsova,
Brockhoff & Christensen 2017, lmerTest, J Stat Softw 82(13), the method of its ``contestMD``).
Strata and covariates are adjusted for as in the arm contrast.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.arm_contrast import (
    GROUPS,
    MIN_GROUPS,
    _end_wave,
    _fit,
    _num,
    _OLSFit,
    _row,
    _test,
    _usable_covariates,
    _wave_label,
    arm_contrast_settings,
)
from analysis.classifier_outcomes import is_classifier_outcome
from analysis.stats.formula import model_matrix, parse_formula

__all__ = ["CODING", "factorial_effects", "fit_factorial"]

CODING = (
    "effect (sum-to-zero) coding: a level's effect is its deviation from the grand mean over "
    "all cells; a main effect averages over the other factors' levels"
)
ESTIMAND = (
    "Main effects and interactions of the factors on the model-based mean outcome at the last "
    "wave, all cells constrained to one baseline mean (cLDA), adjusted for the stratification "
    "factors and covariates listed; "
)
ESTIMAND_FOLLOW_UP = (
    "Main effects and interactions of the factors on the model-based mean classifier rate at "
    "the last follow-up wave, over the follow-up occasions only (a classifier rate has no "
    "pre-randomisation baseline), adjusted for the stratification factors and covariates "
    "listed; "
)


def _joint_test(fit: Any, rows: np.ndarray) -> dict[str, float | None]:
    """F test of L'β = 0 for a contrast matrix L (q rows), Satterthwaite denominator df."""
    if isinstance(fit, _OLSFit):
        beta, cov = fit.beta, fit.cov
    else:
        beta = np.array([fit.fixed[name].estimate for name in fit.fixed_names])
        cov = fit.fixed_cov
    q = rows.shape[0]
    est = rows @ beta
    vcov = rows @ cov @ rows.T
    values, vectors = np.linalg.eigh(vcov)
    if not np.all(values > 1e-12 * max(values.max(), 1e-300)):
        return {"F": None, "df_num": q, "df_den": None, "p": None}
    f_value = float(est @ np.linalg.solve(vcov, est)) / q
    # lmerTest's contestMD: each eigen-direction's t has its own Satterthwaite df.
    dfs = []
    for m in range(q):
        direction = vectors[:, m] @ rows
        if isinstance(fit, _OLSFit):
            dfs.append(float(fit.df_resid))
        else:
            dfs.append(fit.contrast(direction).df)
    dfs_arr = np.array(dfs, dtype=float)
    if not np.all(np.isfinite(dfs_arr) | np.isinf(dfs_arr)):
        df_den = float("nan")
    elif np.all(np.isinf(dfs_arr)):
        df_den = float("inf")
    else:
        usable = dfs_arr[dfs_arr > 2]
        e = float(np.sum(usable / (usable - 2))) if len(usable) else 0.0
        df_den = 2 * e / (e - q) if e > q else float(np.min(dfs_arr))
    if math.isnan(df_den):
        p = float("nan")
    elif math.isinf(df_den):
        p = float(stats.chi2.sf(f_value * q, q))
    else:
        p = float(stats.f.sf(f_value, q, df_den))
    return {"F": _num(f_value), "df_num": q, "df_den": _num(df_den), "p": _num(p)}


def fit_factorial(
    linked: pd.DataFrame,
    outcome: str,
    *,
    factors: Sequence[tuple[str, Sequence[str]]],
    arm_levels: Mapping[str, Mapping[str, str]],
    interaction: bool = True,
    end_wave: float | None = None,
    covariates: Sequence[str] = (),
    strata: Sequence[str] = (),
    random_effects: str = "~1",
    baseline: bool = True,
) -> dict[str, Any]:
    """Main effects (and interactions) of ``factors`` for one outcome, as a JSON-able dict.

    ``factors``: (factor key, its level keys in protocol order) for each factor to analyse;
    ``arm_levels``: {arm key: {factor key: level key}}. ``baseline=False`` fits the follow-up
    waves only (a classifier rate, which has no baseline). ``"error"`` says why nothing could
    be estimated.
    """
    names_only = [f for f, _ in factors]
    head: dict[str, Any] = {
        "outcome": outcome,
        "factors": names_only,
        "interaction": bool(interaction and len(factors) > 1),
        "coding": CODING,
        "estimand": (ESTIMAND if baseline else ESTIMAND_FOLLOW_UP)
        + ("interactions as effect-coded products." if interaction else "no interaction term."),
        "baseline": baseline,
    }
    for column in (outcome, "arm", "wave", GROUPS):
        if column not in linked.columns:
            return {**head, "error": f"no column {column!r} in the linked data"}
    frame = linked.dropna(subset=[GROUPS, "arm", "wave", outcome]).copy()
    frame["wave"] = pd.to_numeric(frame["wave"]).astype(float)
    if not baseline:
        # A rate at wave 0 (if its window fell after enrolment) is already under the arm: not a
        # baseline, and mixing it in would not make one.
        frame = frame[frame["wave"] > 0]
    for key, _ in factors:
        frame[f"_level_{key}"] = frame["arm"].map(
            lambda arm, key=key: (arm_levels.get(str(arm)) or {}).get(key)
        )
    level_cols = [f"_level_{key}" for key, _ in factors]
    unknown = sorted(
        str(a) for a in frame.loc[frame[level_cols].isna().any(axis=1), "arm"].unique()
    )
    if unknown:
        return {**head, "error": "arms without a level of every factor: " + ", ".join(unknown)}
    wanted = list(dict.fromkeys([*strata, *covariates]))
    usable, dropped = _usable_covariates(frame, wanted)
    frame = frame.dropna(subset=usable)
    usable, more_dropped = _usable_covariates(frame, usable)
    dropped += more_dropped
    head.update(
        {
            "covariates": [c for c in usable if c not in strata],
            "strata": [c for c in usable if c in strata],
            "dropped_covariates": dropped,
        }
    )
    cells = [tuple(c) for c in itertools.product(*(levels for _, levels in factors))]
    if baseline and not bool((frame["wave"] == 0).any()):
        return {**head, "error": "no baseline (wave 0) answers: the model needs a baseline"}

    def cells_at(w: float) -> set[tuple]:
        at = frame.loc[frame["wave"] == w, level_cols]
        return {tuple(r) for r in at.itertuples(index=False)}

    follow = sorted(w for w in frame["wave"].unique() if w > 0)
    kept_waves = [w for w in follow if cells_at(w) >= set(cells)]
    skipped = [_wave_label(w) for w in follow if w not in kept_waves]
    if not kept_waves:
        return {**head, "error": "no follow-up wave with answers from every cell of the design"}
    end, error = _end_wave(kept_waves, end_wave, "answers from every cell")
    if error:
        return {**head, "error": error}
    first_waves = [0.0] if baseline else []
    frame = frame[frame["wave"].isin([*first_waves, *kept_waves])].reset_index(drop=True)
    n_groups = int(frame[GROUPS].nunique())
    if n_groups < MIN_GROUPS:
        return {
            **head,
            "error": f"too few participants with complete data ({n_groups} < {MIN_GROUPS})",
        }

    # Effect-coded columns per factor: level j (j < k - 1) is 1 in its own column, the last
    # level is -1 in every column.
    codes: dict[str, list[np.ndarray]] = {}
    code_labels: dict[str, list[str]] = {}
    for key, levels in factors:
        values = frame[f"_level_{key}"].to_numpy()
        cols = []
        for level in levels[:-1]:
            cols.append(np.where(values == level, 1.0, np.where(values == levels[-1], -1.0, 0.0)))
        codes[key] = cols
        code_labels[key] = [f"{key}[{level}]" for level in levels[:-1]]
    terms: list[tuple[str, ...]] = [(key,) for key, _ in factors]
    if interaction and len(factors) > 1:
        for size in range(2, len(factors) + 1):
            terms += list(itertools.combinations(names_only, size))

    labels: dict[str, str] = {}
    wave_cols: dict[float, str] = {}
    term_cols: dict[tuple[tuple[str, ...], int, float], str] = {}
    term_labels: dict[tuple[str, ...], list[str]] = {}
    for i, w in enumerate(kept_waves):
        if not baseline and i == 0:
            continue  # without a baseline the intercept is the first follow-up wave's mean
        wave_cols[w] = f"_w{i}"
        frame[f"_w{i}"] = (frame["wave"] == w).astype(float)
        labels[f"_w{i}"] = f"wave[{_wave_label(w)}]"
    for ti, term in enumerate(terms):
        parts = [list(zip(codes[k], code_labels[k], strict=True)) for k in term]
        combos = list(itertools.product(*parts))
        term_labels[term] = [":".join(label for _, label in combo) for combo in combos]
        for ci, combo in enumerate(combos):
            product = np.ones(len(frame))
            for column, _ in combo:
                product = product * column
            for i, w in enumerate(kept_waves):
                name = f"_t{ti}_{ci}_w{i}"
                frame[name] = product * (frame["wave"] == w).to_numpy(dtype=float)
                term_cols[(term, ci, w)] = name
                labels[name] = f"{term_labels[term][ci]}:wave[{_wave_label(w)}]"
    formula = f"{outcome} ~ " + " + ".join([*wave_cols.values(), *term_cols.values(), *usable])
    X, names = model_matrix(parse_formula(formula), frame)
    fit, summary, p_method = _fit(frame, formula, random_effects, X, names, outcome)
    if fit is None:
        return {**head, **summary}
    summary["fixed"] = {labels.get(k, k): v for k, v in summary["fixed"].items()}
    index = {name: k for k, name in enumerate(names)}

    def unit(name: str) -> np.ndarray:
        L = np.zeros(len(names))
        L[index[name]] = 1.0
        return L

    main_effects = []
    for key, levels in factors:
        term = (key,)
        coefficient = [unit(term_cols[(term, ci, end)]) for ci in range(len(levels) - 1)]
        # The last level's effect is minus the sum of the others (effects sum to zero).
        effect_of = {level: coefficient[j] for j, level in enumerate(levels[:-1])}
        effect_of[levels[-1]] = -np.sum(coefficient, axis=0)
        joint = _joint_test(fit, np.array(coefficient))
        main_effects.append(
            {
                "factor": key,
                "levels": list(levels),
                "level_effects": [
                    {"level": level, **_row(_test(fit, effect_of[level]))} for level in levels
                ],
                "differences": [
                    {
                        "level": level,
                        "reference": levels[0],
                        **_row(_test(fit, effect_of[level] - effect_of[levels[0]])),
                    }
                    for level in levels[1:]
                ],
                "test": joint,
            }
        )
    interactions = []
    for term in terms:
        if len(term) < 2:
            continue
        rows = [unit(term_cols[(term, ci, end)]) for ci in range(len(term_labels[term]))]
        interactions.append(
            {
                "factors": list(term),
                "coefficients": [
                    {"term": label, **_row(_test(fit, L))}
                    for label, L in zip(term_labels[term], rows, strict=True)
                ],
                "test": _joint_test(fit, np.array(rows)),
            }
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
        "end_wave": _num(end),
        "waves": [*first_waves, *(_num(w) for w in kept_waves)],
        "waves_skipped": skipped,
        "n_obs": len(frame),
        "n_groups": n_groups,
        "model": summary,
        "main_effects": main_effects,
        "interactions": interactions,
        "observed": [
            {"arm": str(r.arm), "wave": _num(r.wave), "n": int(r.n), "mean": _num(r.mean)}
            for r in observed.itertuples(index=False)
        ],
    }


def factorial_effects(linked: pd.DataFrame, plan: Mapping[str, Any]) -> dict[str, Any]:
    """``results["factorial"]``: one entry per outcome, or ``{}`` when the plan asks for none.

    ``plan["factorial"]`` is the protocol's section plus, added by the Django side from the
    protocol version (:func:`analysis.services`), ``design``: the factors' level keys in
    protocol order, and ``arm_levels``: {arm: {factor: level}}.
    """
    section = plan.get("factorial")
    if not isinstance(section, Mapping) or "arm" not in linked.columns:
        return {}
    design = {f["key"]: list(f["levels"]) for f in section.get("design", [])}
    wanted = section.get("factors") or list(design)
    factors = [(key, design[key]) for key in wanted if key in design]
    missing = [key for key in wanted if key not in design]
    settings = arm_contrast_settings(plan)
    strata = (
        sorted(c for c in linked.columns if c.startswith("stratum."))
        if settings["adjust_strata"]
        else []
    )
    covariates = [c for c in plan.get("covariates", []) or [] if c not in strata]
    out = {}
    for outcome in plan.get("outcomes", []):
        if missing or not factors:
            out[outcome] = {
                "outcome": outcome,
                "factors": list(wanted),
                "error": "the protocol has no factor "
                + ", ".join(repr(k) for k in missing or wanted),
            }
            continue
        try:
            out[outcome] = fit_factorial(
                linked,
                outcome,
                factors=factors,
                arm_levels=section.get("arm_levels") or {},
                interaction=bool(section.get("interaction", True)),
                end_wave=settings["end_wave"],
                covariates=covariates,
                strata=strata,
                random_effects=settings["random_effects"],
                baseline=not is_classifier_outcome(outcome),
            )
        except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
            out[outcome] = {"outcome": outcome, "factors": list(wanted), "error": str(exc)}
    return out
