"""The analysis report: one self-contained HTML page (inline CSS, figures as base64 PNG).

:func:`render_report` takes the results dict of :func:`analysis.pipeline.analyse`, the frames the
figures are drawn from and a few provenance fields, and returns a string. The page is written as
Django templates (``analysis/templates/analysis/report*.html``) rendered by a standalone
template engine with autoescaping, so it needs no configured Django (a notebook can call it) and
every piece of text is escaped by the engine (outcome names and error messages come from a
protocol a study designer wrote). This module only turns results into plain strings and lists
for the templates; numbers are formatted here, so the templates never touch locale settings.
Figures use matplotlib's Agg backend, so nothing needs a display. Each figure is a
``<figure data-figure="name">`` holding an ``<img alt="…">``, each table has a ``data-table``
attribute, so a browser test can find them.

Sections: provenance, the primary question (p-value method, multiplicity, interim looks),
Table 1 by arm, rows used and excluded per model, per outcome the model tables (standardised
effects, R², variance components with profile-likelihood CIs, residual and random-effect
diagnostics), model-based means per arm and wave, the dose-response table (observed usage
windows only), the sensitivity analyses, the descriptive figures, attrition and methods notes.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: the worker has no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from django.template import Context, Engine
from django.utils.safestring import mark_safe

from analysis.classifier_outcomes import USAGE_MODELS_REFUSED
from analysis.plan import ROBUST_P_METHOD, ROBUST_P_METHOD_G1
from analysis.report_arm import arm_contrast_html, look_html, multiplicity_html
from analysis.report_factorial import factorial_html
from analysis.supplement import DOSE_RULE, EXCLUSION_REASONS, dose_rows, exclusion_rows

__all__ = ["FIGURES", "render_report"]

TEMPLATES = Path(__file__).resolve().parent / "templates"

FIGURES = ("trajectories", "within_slopes", "compliance", "usage_distribution")
LEGACY_P_METHOD = "Wald z"

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;
color:#1d1d1f}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}thead{background:#f3f3f3}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dl.meta dt{font-weight:600}figure{margin:1rem 0}figure img{max-width:100%}
.error{color:#a00}code{font-size:.85rem;word-break:break-all}
caption{caption-side:top;text-align:left;font-weight:600;padding:.2rem 0}
tr.section th{background:#fafafa;text-align:left}ol.toc{columns:2;font-size:.9rem}
.note{font-size:.9rem;color:#333}
@media print{body{margin:0;max-width:none;font-size:11px}nav{display:none}
figure,table{break-inside:avoid}h2{break-after:avoid}}
"""


def _fmt(value: Any, digits: int = 3) -> str:
    """A number as text for the page ("–" when missing or not finite); text as it is."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if not np.isfinite(value):
            return "–"
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(name: str, fig: plt.Figure, alt: str, caption: str) -> dict[str, str]:
    return {"name": name, "alt": alt, "caption": caption, "png": _png(fig)}


def _empty(name: str, alt: str, why: str) -> dict[str, str]:
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center")
    return _figure(name, fig, alt, why)


def _table(
    name: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    caption: str,
    note: str = "",
) -> dict[str, Any]:
    """A table for report_table.html; ``note`` is printed under it (the rule it follows)."""
    return {
        "name": name,
        "header": list(header),
        "rows": [[c if isinstance(c, str) else _fmt(c) for c in row] for row in rows],
        "caption": caption,
        "note": note,
    }


# --- figures ----------------------------------------------------------------------------------


def trajectory_figure(linked: pd.DataFrame, outcomes: list[str]) -> dict[str, str]:
    """Observed mean outcome per wave and arm ± 1.96 SE, one panel per outcome."""
    alt = "Outcome trajectories by arm: mean per wave with 95% confidence intervals"
    present = [o for o in outcomes if o in linked.columns]
    if not present or len(linked) == 0:
        return _empty("trajectories", alt, "No outcome data yet.")
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.5), squeeze=False)
    arms = linked["arm"].fillna("all") if "arm" in linked else pd.Series("all", linked.index)
    for ax, outcome in zip(axes[0], present, strict=True):
        frame = pd.DataFrame({"arm": arms, "wave": linked["wave"], "y": linked[outcome]}).dropna()
        stats = frame.groupby(["arm", "wave"])["y"].agg(["mean", "std", "count"]).reset_index()
        stats["half"] = 1.96 * stats["std"].fillna(0) / np.sqrt(stats["count"])
        for arm, part in stats.groupby("arm"):
            ax.errorbar(
                part["wave"], part["mean"], yerr=part["half"], marker="o", capsize=3, label=str(arm)
            )
        ax.set_title(outcome)
        ax.set_xlabel("wave")
        ax.legend(fontsize=8)
    return _figure(
        "trajectories", fig, alt, "Observed mean ± 1.96 SE per wave and arm (completers only)."
    )


def within_figure_rows(linked: pd.DataFrame, predictor: str, outcome: str) -> pd.DataFrame:
    """The rows the within-person figure draws: outcome and usage present and the usage window
    observed (after enrolment), so no point is a "zero use" that was really "not started"."""
    rows = dose_rows(linked, predictor)
    return rows[["participant", predictor, outcome]].dropna()


def within_slope_figure(
    linked: pd.DataFrame, outcomes: list[str], predictor: str | None
) -> dict[str, str]:
    """Within-person usage against within-person outcome, observed usage windows only."""
    alt = "Within-person usage against within-person outcome with the fitted slope"
    if predictor is None or predictor not in linked.columns:
        return _empty("within_slopes", alt, "No usage predictor in the plan.")
    present = [o for o in outcomes if o in linked.columns]
    if not present:
        return _empty("within_slopes", alt, "No outcome data yet.")
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.5), squeeze=False)
    for ax, outcome in zip(axes[0], present, strict=True):
        frame = within_figure_rows(linked, predictor, outcome)
        # Centred over the plotted rows themselves, so a left-out row moves no one's mean.
        x = frame[predictor] - frame.groupby("participant")[predictor].transform("mean")
        y = frame[outcome] - frame.groupby("participant")[outcome].transform("mean")
        ax.scatter(x, y, s=8, alpha=0.4)
        if len(frame) > 2 and float(np.var(x)) > 0:
            slope = float(np.sum(x * y) / np.sum(x * x))
            grid = np.linspace(float(x.min()), float(x.max()), 2)
            ax.plot(grid, slope * grid, color="C3", label=f"slope {slope:.3g}")
            ax.legend(fontsize=8)
        ax.set_xlabel(f"{predictor} (within-person)")
        ax.set_ylabel(f"{outcome} (within-person)")
    caption = (
        "Deviations from each participant's own mean, over occasions with an observed usage "
        "window only (windows before enrolment have no usage and are not drawn as zero use)."
    )
    return _figure("within_slopes", fig, alt, caption)


def compliance_figure(compliance: pd.DataFrame | None) -> dict[str, str]:
    """Share of invitations completed per wave."""
    alt = "Survey compliance over time: completed divided by invited per wave"
    if compliance is None or len(compliance) == 0:
        return _empty("compliance", alt, "No invitations yet.")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    share = compliance["completed"] / compliance["invited"].where(compliance["invited"] > 0)
    ax.plot(compliance["wave"], share, marker="o")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("wave")
    ax.set_ylabel("completed / invited")
    return _figure("compliance", fig, alt, "Completed invitations over invitations, per wave.")


def usage_figure(messages_per_day: pd.Series | np.ndarray | None) -> dict[str, str]:
    """Histogram of messages sent per participant-day (active days)."""
    alt = "Usage distribution: histogram of messages sent per active day"
    values = np.asarray([] if messages_per_day is None else messages_per_day, dtype=float)
    if values.size == 0:
        return _empty("usage_distribution", alt, "No chat usage yet.")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(values, bins=min(40, max(5, int(values.max()) + 1)))
    ax.set_xlabel("messages sent per day")
    ax.set_ylabel("participant-days")
    return _figure("usage_distribution", fig, alt, "Days with at least one message.")


def model_means_figure(name: str, outcome: str, means: list[Mapping[str, Any]]) -> dict[str, str]:
    """Model-based mean per arm and wave with its 95% interval (a band per arm)."""
    alt = f"Model-based means of {outcome} by arm and wave with 95% confidence intervals"
    fig, ax = plt.subplots(figsize=(6, 3.4))
    frame = pd.DataFrame(means)
    for arm, part in frame.groupby("arm", sort=True):
        part = part.sort_values("wave")
        waves = pd.to_numeric(part["wave"], errors="coerce")
        ax.plot(waves, part["estimate"].astype(float), marker="o", label=str(arm))
        if {"ci_low", "ci_high"} <= set(part.columns):  # another analysis may give no CI
            low = pd.to_numeric(part["ci_low"], errors="coerce")
            high = pd.to_numeric(part["ci_high"], errors="coerce")
            ax.fill_between(waves, low, high, alpha=0.2)
    ax.set_xlabel("wave")
    ax.set_ylabel(outcome)
    ax.legend(fontsize=8)
    return _figure(name, fig, alt, f"Model-based means of {outcome} per arm and wave, 95% CI.")


def diagnostics_figure(name: str, caption: str, diagnostics: Mapping[str, Any]) -> dict[str, str]:
    """Residuals against fitted values, Q-Q of residuals, Q-Q of the random effects."""
    alt = f"Diagnostics of the {caption}: residuals against fitted, normal Q-Q plots"
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    ax = axes[0]
    ax.scatter(diagnostics["fitted"], diagnostics["residual"], s=8, alpha=0.4)
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set_xlabel("fitted (conditional)")
    ax.set_ylabel("residual")
    ax.set_title("Residuals vs fitted")
    qq = diagnostics["residual_qq"]
    axes[1].scatter(qq["theoretical"], qq["sample"], s=8)
    axes[1].set_title("Q-Q: standardised residuals")
    for label, points in (diagnostics.get("random_qq") or {}).items():
        axes[2].scatter(points["theoretical"], points["sample"], s=8, label=label)
    axes[2].set_title("Q-Q: random effects (BLUPs / SD)")
    if diagnostics.get("random_qq"):
        axes[2].legend(fontsize=8)
    for ax in axes[1:]:
        lims = [*ax.get_xlim(), *ax.get_ylim()]
        low, high = min(lims), max(lims)
        ax.plot([low, high], [low, high], color="0.5", linewidth=0.8)
        ax.set_xlabel("normal quantile")
    shown = diagnostics.get("n_points")
    total = diagnostics.get("n_obs")
    text = f"Diagnostics, {caption}: residuals are conditional (y − Xβ − Zb)"
    if shown is not None and total is not None and shown < total:
        text += f"; {shown} of {total} rows drawn, evenly spaced"
    return _figure(name, fig, alt, text + ".")


# --- results → tables -------------------------------------------------------------------------

MODEL_CAPTIONS = {
    "usage_model": "Within/between-person usage model",
    "arm_time_model": "Arm × time model",
    "null_model": "Null model (intraclass correlation)",
}
# Models whose coefficient table is not shown (the null model's only term is the intercept).
HIDDEN_TABLES = ("null_model",)


def _p_method(model: Mapping[str, Any]) -> str:
    """The test behind a model's p-values. Results stored before the engine computed
    Satterthwaite df carry no ``p_method``: theirs were normal (Wald z) p-values."""
    return str(model.get("p_method") or LEGACY_P_METHOD)


def _is_model(value: Any) -> bool:
    return (
        isinstance(value, Mapping) and "formula" in value and ("fixed" in value or "error" in value)
    )


def _caption(key: str, model: Mapping[str, Any]) -> str:
    return str(model.get("label") or MODEL_CAPTIONS.get(key) or key.replace("_", " "))


def _ordered_models(entry: Mapping[str, Any], primary_key: str) -> list[tuple[str, Mapping]]:
    models = [(k, v) for k, v in entry.items() if _is_model(v)]
    return sorted(models, key=lambda kv: kv[0] != primary_key)


def _standardised_cell(model: Mapping[str, Any], term: str) -> str:
    effects = model.get("standardised")
    if not isinstance(effects, Mapping) or term not in effects:
        return "–"
    effect = effects[term]
    return f"{_fmt(effect.get('estimate'))} ({effect.get('scale', '')})"


def _r2_line(model: Mapping[str, Any]) -> str:
    r2 = model.get("r2")
    if not isinstance(r2, Mapping):
        return ""
    if "error" in r2:
        return f"R²: not computed: {r2['error']}"
    return (
        f"R² ({r2.get('method')}): marginal {_fmt(r2.get('marginal'))}, conditional "
        f"{_fmt(r2.get('conditional'))} (variance: fixed {_fmt(r2.get('var_fixed'))}, random "
        f"{_fmt(r2.get('var_random'))}, residual {_fmt(r2.get('var_residual'))})."
    )


def _vc_table(name: str, caption: str, model: Mapping[str, Any]) -> dict[str, Any] | None:
    ci = model.get("variance_ci")
    if not isinstance(ci, Mapping):
        return None
    if "error" in ci:
        return _table(name, ["component", "SD", "95% CI"], [["all", "–", ci["error"]]], caption)
    level = float(ci.get("level") or 0.95)
    rows = [
        [component, v.get("estimate"), v.get("ci_low"), v.get("ci_high")]
        for component, v in (ci.get("sd") or {}).items()
    ]
    return _table(
        name,
        ["component", "SD", f"{level:.0%} CI low", f"{level:.0%} CI high"],
        rows,
        f"{caption}: variance components (SD)",
        f"{level:.0%} intervals by {ci.get('method')}; a lower limit of 0 means the data do not "
        "exclude a zero variance.",
    )


def _exclusion_text(model: Mapping[str, Any]) -> str:
    info = model.get("exclusions")
    if not isinstance(info, Mapping) or "error" in info:
        return ""
    reasons = "; ".join(f"{r['reason']}: {r['n']}" for r in info.get("reasons", []))
    return f"Rows: {info.get('n_input')} offered, {info.get('n_used')} used" + (
        f"; left out: {reasons}." if reasons else "; none left out."
    )


def _model_view(key: str, outcome: str, model: Mapping[str, Any]) -> dict[str, Any]:
    name = f"{key}:{outcome}"
    caption = _caption(key, model)
    view: dict[str, Any] = {
        "name": name,
        "caption": caption,
        "not_fitted": [
            {"re_formula": item.get("re_formula"), "reason": item.get("reason")}
            for item in model.get("not_fitted", [])
        ],
    }
    if "error" in model:
        # The error already lists every structure tried with its reason (refusals included),
        # so the refusals are not repeated as rows of their own.
        view["error"] = str(model["error"])
        view["not_fitted"] = []
        return view
    method = _p_method(model)
    rows = [
        [
            term,
            v.get("estimate"),
            v.get("se"),
            v.get("ci_low"),
            v.get("ci_high"),
            _fmt(v.get("df"), 2),
            v.get("t"),
            _fmt(v.get("p"), 4),
            _standardised_cell(model, term),
        ]
        for term, v in model["fixed"].items()
    ]
    vc = model.get("variance_components", {})
    notes = [
        f"n = {model.get('n_obs')} observations, {model.get('n_groups')} participants",
        f"residual SD {_fmt(vc.get('residual_sd'))}",
        "random SD " + ", ".join(f"{k} {_fmt(v)}" for k, v in vc.get("random_sd", {}).items()),
        f"ICC {_fmt(model.get('icc'))}",
        "converged" if model.get("converged") else "did NOT converge",
        f"p-values and 95% CIs: {method}",
    ]
    if model.get("singular"):
        notes.append("singular fit (a variance estimated at zero)")
    if model.get("fallback_from"):
        notes.append(f"random effects reduced from {model['fallback_from']}")
    if model.get("refit_from"):
        notes.append(f"refitted from {model['refit_from']}: {model.get('refit_reason', '')}")
    header = [
        "term",
        "estimate",
        "SE",
        "95% CI low",
        "95% CI high",
        "df",
        "t",
        f"p ({method})",
        "standardised (scale)",
    ]
    view.update(
        table=_table(name, header, rows, caption),
        formula=model.get("formula"),
        re_formula=model.get("re_formula"),
        notes=notes,
        r2=_r2_line(model),
        vc_table=_vc_table(f"variance_ci:{name}", caption, model),
        exclusion=_exclusion_text(model),
    )
    return view


def _correction_label(primary: Mapping[str, Any]) -> str:
    """The correction behind q; runs stored before the plan chose one used BH."""
    method = str(primary.get("method") or "Benjamini-Hochberg")
    return "BH" if method == "Benjamini-Hochberg" else method


def _primary_table(results: Mapping[str, Any]) -> dict[str, Any]:
    primary = results.get("primary", {})
    rows = [
        [
            outcome,
            _fmt(primary.get("p", {}).get(outcome), 4),
            _fmt(primary.get("q", {}).get(outcome), 4),
        ]
        for outcome in results.get("plan", {}).get("outcomes", [])
    ]
    method = _p_method(primary)
    return _table(
        "primary",
        ["outcome", f"p ({method})", f"q ({_correction_label(primary)})"],
        rows,
        f"Primary term {primary.get('term') or '–'} across outcomes",
    )


def _inference_detail(method: str) -> str:
    if method == LEGACY_P_METHOD:
        return "normal approximation, no degrees-of-freedom correction (an older run)"
    if method in (ROBUST_P_METHOD, ROBUST_P_METHOD_G1):
        # The lagged primary model's tests are the sandwich ones (analysis.plan.cluster_robust);
        # describing them as Satterthwaite tests would misstate the primary inference.
        df = (
            "Bell-McCaffrey (Satterthwaite) degrees of freedom"
            if method == ROBUST_P_METHOD
            else "participants − 1 degrees of freedom (an older run)"
        )
        return (
            "the primary model's tests use CR2 cluster-robust standard errors clustered by "
            f"participant (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018) and a t "
            f"distribution with {df}; the other models' tests "
            "are t tests with Satterthwaite degrees of freedom, as lmerTest computes them "
            "(Kuznetsova et al. 2017)"
        )
    return (
        "t tests with Satterthwaite degrees of freedom, as lmerTest computes them "
        "(Kuznetsova et al. 2017); random-effect structures the data cannot identify are "
        "not fitted (lme4's checks, Bates et al. 2015)"
    )


def _table1_view(table1: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(table1, Mapping) or not table1.get("rows"):
        return None
    groups = list(table1.get("groups", []))

    def cell(stat: str, value: Mapping[str, Any] | None) -> str:
        if not isinstance(value, Mapping):
            return "–"
        if stat == "count":
            share = value.get("share")
            return f"{value.get('n')}" + ("" if share is None else f" ({100 * share:.0f}%)")
        if stat == "mean_sd":
            if value.get("mean") is None:
                return "–"
            return f"{_fmt(value['mean'], 1)} ({_fmt(value.get('sd'), 1)}); n = {value.get('n')}"
        if stat == "median_iqr":
            if value.get("median") is None:
                return "–"
            return (
                f"{_fmt(value['median'], 2)} [{_fmt(value.get('q1'), 2)}–"
                f"{_fmt(value.get('q3'), 2)}]"
            )
        return "–"

    sections: list[dict[str, Any]] = []
    for row in table1["rows"]:
        if not sections or sections[-1]["title"] != row["section"]:
            sections.append({"title": row["section"], "rows": []})
        label = row["label"]
        suffix = {"mean_sd": "mean (SD)", "median_iqr": "median [IQR]", "count": "n (%)"}
        sections[-1]["rows"].append(
            {
                # "n" of the participants row is a bare count (no share to show).
                "label": label if label == "n" else f"{label}, {suffix.get(row['stat'], '')}",
                "cells": [cell(row["stat"], row["values"].get(g)) for g in groups],
            }
        )
    return {
        "groups": groups,
        "span": str(len(groups) + 1),
        "sections": sections,
        "caption": "Participants by arm",
        "note": "Outcome at each participant's first analysed occasion; usage over the whole "
        "follow-up (people who never used the platform count as 0); survey completion over all "
        "invitations of the analysed instruments.",
    }


def _exclusions_table(results: Mapping[str, Any]) -> dict[str, Any] | None:
    rows = []
    for item in exclusion_rows(results):
        model = results["outcomes"][item["outcome"]][item["model"]]
        if "error" in item:
            continue
        counts = {r["reason"]: r["n"] for r in item.get("reasons", [])}
        rows.append(
            [
                item["outcome"],
                _caption(item["model"], model),
                _fmt(item.get("n_input")),
                _fmt(item.get("n_used")),
                *[_fmt(counts.get(reason, 0)) for reason in EXCLUSION_REASONS],
            ]
        )
    if not rows:
        return None
    return _table(
        "exclusions",
        ["outcome", "model", "rows offered", "rows used", *EXCLUSION_REASONS],
        rows,
        "Rows used and left out, per model",
        "Each left-out row is counted once, under the first reason that applies (in column "
        "order). A usage window before enrolment is missing, not zero use.",
    )


def _dose_view(outcome: str, dose: Mapping[str, Any]) -> dict[str, Any]:
    name = f"dose_response:{outcome}"
    if dose.get("error"):
        return {"name": name, "error": str(dose["error"])}
    rows = [[b["label"], _fmt(b["n"]), b["mean"], b["ci_low"], b["ci_high"]] for b in dose["bins"]]
    rule = dose.get("rule") or DOSE_RULE
    excluded = dose.get("n_excluded")
    note = rule + (f" Rows left out: {excluded}." if excluded is not None else "")
    return _table(
        name,
        [f"{dose['usage']} bin", "participants", "mean", "CI low", "CI high"],
        rows,
        f"{outcome} by quartile of {dose['usage']} (participant means)",
        note,
    )


def _means_view(
    outcome: str, results: Mapping[str, Any], entry: Mapping[str, Any]
) -> tuple[list[Mapping[str, Any]], str] | None:
    """Model-based means per arm and wave: the arm-contrast analysis's when present, else those
    predicted from the arm × time model."""
    contrast = (results.get("arm_contrast") or {}).get(outcome)
    if isinstance(contrast, Mapping):
        for key in ("means", "emmeans"):
            means = contrast.get(key)
            if isinstance(means, list) and means and {"arm", "wave", "estimate"} <= set(means[0]):
                return means, str(contrast.get("label") or "arm contrast model")
    model = entry.get("arm_time_model")
    if isinstance(model, Mapping) and isinstance(model.get("trajectories"), list):
        return model["trajectories"], _caption("arm_time_model", model)
    return None


def _sensitivity_view(results: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[dict]]:
    analyses = results.get("sensitivity")
    if not isinstance(analyses, list) or not analyses:
        return None, []
    rows, notes = [], []
    for analysis in analyses:
        if not isinstance(analysis, Mapping):
            continue
        name = str(analysis.get("name") or analysis.get("key") or "analysis")
        for outcome, v in (analysis.get("outcomes") or {}).items():
            if not isinstance(v, Mapping):
                continue
            if v.get("error"):
                rows.append(
                    [
                        name,
                        outcome,
                        v.get("term") or "–",
                        f"not computed: {v['error']}",
                        "–",
                        "–",
                        "–",
                        "–",
                        "–",
                        "–",
                    ]
                )
                continue
            rows.append(
                [
                    name,
                    outcome,
                    v.get("term") or "–",
                    v.get("estimate"),
                    v.get("se"),
                    v.get("ci_low"),
                    v.get("ci_high"),
                    _fmt(v.get("p"), 4),
                    _fmt(v.get("n_obs")),
                    _fmt(v.get("n_groups")),
                ]
            )
        text = " ".join(str(t) for t in (analysis.get("description"), analysis.get("note")) if t)
        if text:
            notes.append({"name": name, "text": text})
    table = _table(
        "sensitivity",
        [
            "analysis",
            "outcome",
            "term",
            "estimate",
            "SE",
            "95% CI low",
            "95% CI high",
            "p (see analysis)",
            "observations",
            "participants",
        ],
        rows,
        "Sensitivity analyses of the primary term",
    )
    return table, notes


def _attrition_table(attrition: pd.DataFrame | None) -> dict[str, Any] | None:
    if attrition is None or len(attrition) == 0:
        return None
    rows = [
        [str(r.by), str(r.group), str(r.last_wave), str(r.n), _fmt(float(r.share))]
        for r in attrition.itertuples(index=False)
    ]
    return _table(
        "attrition",
        ["by", "group", "last completed wave", "participants", "share"],
        rows,
        "Last completed wave (−1: none)",
    )


METHODS = (
    "Standardised effects: estimate × SD(predictor) / SD(outcome) over the model's rows; for "
    "within-person terms both are pooled within-person SDs, for 0/1 dummies estimate / SD("
    "outcome); none for the intercept and interactions.",
    "R²: marginal (fixed effects) and conditional (fixed + random) after Nakagawa & Schielzeth "
    "(2013), with Johnson's (2014) random-effect variance for random slopes: the mean over rows "
    "of zᵀΣz.",
    "Variance components: 95% profile-likelihood intervals of each SD (random effects and "
    "residual), on the criterion the model was fitted with (REML), the other covariance "
    "parameters profiled out (Bates et al. 2015).",
    "Diagnostics: conditional residuals against conditional fitted values; normal Q-Q plots of "
    "the standardised residuals and of each random effect's conditional modes divided by its SD.",
    "Rows left out of a model are attributed to the first applying reason: missing outcome, "
    "missing usage window (a window before enrolment has no usage, never zero), missing previous "
    "occasion for lagged terms, a missing covariate.",
    "Primary lagged model (change since the previous survey): unless the plan sets "
    "previous_usage: adjust, it is not adjusted for usage before survey t − 2, which acted on "
    "the previous outcome; a real lagged effect is then overstated by 10-30% (in simulations), "
    "while its test of no effect keeps its size. The adjustment removes that but does not "
    "survive mood driving use. What the lagged estimate survives: stable differences between "
    "people, mood driving use (the same-period association does not), a lower baseline, use "
    "declining after the first weeks. What it does not: a time-varying cause of both use and "
    "wellbeing (a life event), and dropout that depends on how people are about to feel when "
    "the effect of use differs between people — those whose use lowers their wellbeing leave, "
    "and the estimate is then the effect among those who stayed (the missing-not-at-random "
    "sensitivity analysis shows how far that could move it; docs/analysis.md).",
    DOSE_RULE,
)


def _anchor(index: int) -> str:
    return f"outcome-{index + 1}"


@cache
def _engine() -> Engine:
    # A standalone engine (not settings.TEMPLATES): the report renders the same with or without
    # a configured Django, and autoescaping is on whatever the project configures.
    return Engine(dirs=[str(TEMPLATES)], autoescape=True, debug=False)


def _classifier_methods(results: Mapping[str, Any]) -> list[str]:
    """One methods line per conversation-classifier rate the plan used: where it comes from and
    its validation against human coders, or that none exists (docs/classifiers.md)."""
    return [
        f"{name}: share of the window's units labelled by classifier {note['classifier']} "
        f"(judge {note['judge']}). {note['summary']}"
        for name, note in sorted((results.get("classifiers") or {}).items())
    ]


def _classifier_outcome_note(outcome: str, results: Mapping[str, Any]) -> str:
    """For a classifier-rate outcome: that it is classifier-derived, where it comes from with
    the classifier's validation note (analysis.data.classifier_feature_notes), and why the
    usage models are not fitted for it. Empty for a survey score."""
    entry = (results.get("outcomes") or {}).get(outcome) or {}
    if not entry.get("classifier_outcome"):
        return ""
    note = (results.get("classifiers") or {}).get(outcome)
    source = (
        f"share of the window's units labelled by classifier {note['classifier']} "
        f"(judge {note['judge']}). {note['summary']}"
        if note
        else "share of the window's labelled units with the classifier's feature (no "
        "validation note in these results)."
    )
    return (
        f"Classifier-derived outcome: {source} Usage models are {USAGE_MODELS_REFUSED}. The "
        "rate is missing in a window without labelled units and in a window starting before "
        "enrolment."
    )


def render_report(
    results: Mapping[str, Any], figures_data: Mapping[str, Any], meta: Mapping[str, Any]
) -> str:
    """The whole report page.

    ``figures_data``: ``linked`` (the linked table), ``compliance`` (``wave, invited,
    completed``), ``messages_per_day`` (values per active participant-day), ``attrition``
    (:func:`analysis.linking.attrition_summary`). ``meta``: ``title``, ``study``,
    ``protocol_version``, ``data_hash``, ``code_version``, ``created_at``.
    """
    plan = results.get("plan", {})
    outcomes = list(plan.get("outcomes", []))
    predictors = list(plan.get("predictors", []))
    linked = figures_data.get("linked")
    if linked is None:
        linked = pd.DataFrame(columns=["participant", "wave"])
    title = meta.get("title") or f"Analysis of {meta.get('study', '')}"
    data = results.get("data", {})
    meta_rows = [
        ("Study", meta.get("study")),
        ("Protocol version", meta.get("protocol_version")),
        ("Data snapshot (SHA-256)", meta.get("data_hash")),
        ("Code version", meta.get("code_version")),
        ("Created", meta.get("created_at")),
        ("Participants / rows", f"{data.get('n_participants', 0)} / {data.get('n_rows', 0)}"),
    ]
    primary = results.get("primary", {})
    primary_key = primary.get("model", "usage_model")
    outcome_views = []
    for index, outcome in enumerate(outcomes):
        entry = results.get("outcomes", {}).get(outcome, {})
        view: dict[str, Any] = {"name": outcome, "anchor": _anchor(index), "figures": []}
        view["classifier_note"] = _classifier_outcome_note(outcome, results)
        models = _ordered_models(entry, primary_key)
        view["models"] = [
            _model_view(key, outcome, model) for key, model in models if key not in HIDDEN_TABLES
        ]
        # The arm contrast's own tables (means, end-of-study contrast) when it was fitted; the
        # model-based means table below is then not repeated (its figure still is).
        view["arm_contrast"] = mark_safe(arm_contrast_html(outcome, results))  # noqa: S308
        view["factorial"] = mark_safe(factorial_html(outcome, results))  # noqa: S308
        means = _means_view(outcome, results, entry)
        if means is not None:
            rows = [
                [
                    str(m.get("arm")),
                    _fmt(m.get("wave"), 0)
                    if isinstance(m.get("wave"), float)
                    else _fmt(m.get("wave")),
                    m.get("estimate"),
                    m.get("se"),
                    _fmt(m.get("df"), 2),
                    m.get("ci_low"),
                    m.get("ci_high"),
                ]
                for m in means[0]
            ]
            view["trajectories"] = (
                None
                if view["arm_contrast"]
                else _table(
                    f"model_means:{outcome}",
                    ["arm", "wave", "mean", "SE", "df", "95% CI low", "95% CI high"],
                    rows,
                    f"Model-based means by arm and wave ({means[1]}; other terms at their mean; "
                    "Satterthwaite t intervals)",
                )
            )
            view["figures"].append(
                model_means_figure(f"model_trajectories:{outcome}", outcome, means[0])
            )
        for key, model in models:
            diagnostics = model.get("diagnostics")
            if key in HIDDEN_TABLES:
                continue
            if isinstance(diagnostics, Mapping) and "fitted" in diagnostics:
                caption = _caption(key, model)
                view["figures"].append(
                    diagnostics_figure(f"diagnostics:{key}:{outcome}", caption, diagnostics)
                )
        if isinstance(entry.get("dose_response"), Mapping):
            view["dose"] = _dose_view(outcome, entry["dose_response"])
        outcome_views.append(view)
    sensitivity, sensitivity_notes = _sensitivity_view(results)
    table1 = _table1_view(results.get("table1"))
    toc = [("primary", "Primary question")]
    if table1:
        toc.append(("table1", "Table 1: participants by arm"))
    toc.append(("exclusions", "Rows used and left out"))
    toc += [(v["anchor"], v["name"]) for v in outcome_views]
    toc += [
        ("sensitivity", "Sensitivity analyses"),
        ("figures", "Figures"),
        ("attrition", "Attrition"),
        ("methods", "Methods notes"),
    ]
    method = _p_method(primary)
    context = {
        "title": title,
        # Our own constant: marked safe so the stylesheet's hash (the CSP) matches CSS exactly.
        "css": mark_safe(CSS),  # noqa: S308
        "meta_rows": [(k, "" if v is None else str(v)) for k, v in meta_rows],
        "toc": toc,
        "p_method": method,
        "p_detail": _inference_detail(method),
        # report_arm's fragments escape every value they insert (html.escape).
        "look": mark_safe(look_html(results)),  # noqa: S308
        "multiplicity": mark_safe(multiplicity_html(results)),  # noqa: S308
        "primary_table": _primary_table(results),
        "table1": table1,
        "exclusions": _exclusions_table(results),
        "outcomes": outcome_views,
        "sensitivity": sensitivity,
        "sensitivity_notes": sensitivity_notes,
        "figures": [
            trajectory_figure(linked, outcomes),
            within_slope_figure(linked, outcomes, predictors[0] if predictors else None),
            compliance_figure(figures_data.get("compliance")),
            usage_figure(figures_data.get("messages_per_day")),
        ],
        "attrition": _attrition_table(figures_data.get("attrition")),
        "methods": [*METHODS, *_classifier_methods(results)],
    }
    html = _engine().get_template("analysis/report.html").render(Context(context))
    # Blank lines left by template tags carry nothing; a compact file is easier to diff.
    return re.sub(r"\n\s*\n+", "\n", html)
