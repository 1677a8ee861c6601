"""The analysis report: one self-contained HTML page (inline CSS, figures as base64 PNG).

No Django: :func:`render_report` takes the results dict of :func:`analysis.plan.run_plan`, the
frames the figures are drawn from and a few provenance fields, and returns a string. Every piece
of text that reaches the page is escaped (core/html_text.py; outcome names and error messages
come from a protocol a study designer wrote). Figures use matplotlib's Agg backend, so nothing
needs a display. Each figure is a ``<figure data-figure="name">`` holding an ``<img alt="…">``,
each table has a ``data-table`` attribute, so a browser test can find them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: the worker has no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.report_arm import arm_contrast_html, look_html, multiplicity_html
from studyplatform.core.html_text import escape_html as _e

__all__ = ["FIGURES", "render_report"]

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
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "–"
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return _e(value)


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(name: str, fig: plt.Figure, alt: str, caption: str) -> str:
    return (
        f'<figure data-figure="{_e(name)}"><img alt="{_e(alt)}" '
        f'src="data:image/png;base64,{_png(fig)}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _empty(name: str, alt: str, why: str) -> str:
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center")
    return _figure(name, fig, alt, why)


# --- figures ----------------------------------------------------------------------------------


def trajectory_figure(linked: pd.DataFrame, outcomes: list[str]) -> str:
    """Mean outcome per wave and arm ± 1.96 SE, one panel per outcome."""
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
    return _figure("trajectories", fig, alt, "Mean ± 1.96 SE per wave and arm.")


def within_slope_figure(linked: pd.DataFrame, outcomes: list[str], predictor: str | None) -> str:
    """Within-person centred usage against within-person centred outcome, with the OLS line."""
    alt = "Within-person usage against within-person outcome with the fitted slope"
    if predictor is None or predictor not in linked.columns:
        return _empty("within_slopes", alt, "No usage predictor in the plan.")
    present = [o for o in outcomes if o in linked.columns]
    if not present:
        return _empty("within_slopes", alt, "No outcome data yet.")
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.5), squeeze=False)
    for ax, outcome in zip(axes[0], present, strict=True):
        frame = linked[["participant", predictor, outcome]].dropna()
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
    return _figure("within_slopes", fig, alt, "Deviations from each participant's own mean.")


def compliance_figure(compliance: pd.DataFrame | None) -> str:
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


def usage_figure(messages_per_day: pd.Series | np.ndarray | None) -> str:
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


# --- tables -----------------------------------------------------------------------------------


def _table(name: str, header: list[str], rows: list[list[str]], caption: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f'<table data-table="{_e(name)}"><caption>{_e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _p_method(model: Mapping[str, Any]) -> str:
    """The test behind a model's p-values. Results stored before the engine computed
    Satterthwaite df carry no ``p_method``: theirs were normal (Wald z) p-values."""
    return str(model.get("p_method") or LEGACY_P_METHOD)


def _not_fitted_rows(name: str, model: Mapping[str, Any], caption: str) -> str:
    """One row per random-effect structure the data could not identify (refused, not fitted)."""
    return "".join(
        f'<p class="error" data-not-fitted="{_e(name)}">{_e(caption)} with random effects '
        f"<code>{_e(item['re_formula'])}</code>: not fitted: {_e(item['reason'])}</p>"
        for item in model.get("not_fitted", [])
    )


def _model_table(name: str, model: Mapping[str, Any], caption: str) -> str:
    if "error" in model:
        # The error already lists every structure tried with its reason (refusals included).
        return (
            f'<p class="error" data-table="{_e(name)}">{_e(caption)}: not fitted: '
            f"{_e(model['error'])}</p>"
        )
    refused = _not_fitted_rows(name, model, caption)
    rows = [
        [
            _e(term),
            _fmt(v["estimate"]),
            _fmt(v["se"]),
            _fmt(v["ci_low"]),
            _fmt(v["ci_high"]),
            _fmt(v.get("df"), 2),
            _fmt(v.get("t")),
            _fmt(v["p"], 4),
        ]
        for term, v in model["fixed"].items()
    ]
    method = _p_method(model)
    vc = model["variance_components"]
    notes = [
        f"formula <code>{_e(model['formula'])}</code>, random effects "
        f"<code>{_e(model['re_formula'])}</code>",
        f"n = {model['n_obs']} observations, {model['n_groups']} participants",
        f"residual SD {_fmt(vc['residual_sd'])}",
        "random SD " + ", ".join(f"{_e(k)} {_fmt(v)}" for k, v in vc["random_sd"].items()),
        f"ICC {_fmt(model.get('icc'))}",
        "converged" if model["converged"] else "did NOT converge",
        f"p-values and 95% CIs: {_e(method)}",
    ]
    if model.get("singular"):
        notes.append("singular fit (a variance estimated at zero)")
    if model.get("fallback_from"):
        notes.append(f"random effects reduced from {_e(model['fallback_from'])}")
    header = ["term", "estimate", "SE", "95% CI low", "95% CI high", "df", "t", f"p ({method})"]
    return refused + _table(name, header, rows, caption) + "<p>" + "; ".join(notes) + ".</p>"


def _correction_label(primary: Mapping[str, Any]) -> str:
    """The correction behind q; runs stored before the plan chose one used BH."""
    method = str(primary.get("method") or "Benjamini-Hochberg")
    return "BH" if method == "Benjamini-Hochberg" else method


def _primary_table(results: Mapping[str, Any]) -> str:
    primary = results.get("primary", {})
    rows = [
        [_e(outcome), _fmt(primary["p"].get(outcome), 4), _fmt(primary["q"].get(outcome), 4)]
        for outcome in results.get("plan", {}).get("outcomes", [])
    ]
    method = _p_method(primary)
    return _table(
        "primary",
        ["outcome", f"p ({method})", f"q ({_correction_label(primary)})"],
        rows,
        f"Primary term {primary.get('term') or '–'} across outcomes",
    )


def _inference_note(results: Mapping[str, Any]) -> str:
    method = _p_method(results.get("primary", {}))
    if method == LEGACY_P_METHOD:
        detail = "normal approximation, no degrees-of-freedom correction (an older run)"
    else:
        detail = (
            "t tests with Satterthwaite degrees of freedom, as lmerTest computes them "
            "(Kuznetsova et al. 2017); random-effect structures the data cannot identify are "
            "not fitted (lme4's checks, Bates et al. 2015)"
        )
    return f'<p data-p-method="{_e(method)}">p-values: {_e(method)}: {_e(detail)}.</p>'


def _dose_table(outcome: str, dose: Mapping[str, Any]) -> str:
    name = f"dose_response:{outcome}"
    if dose.get("error"):
        return f'<p class="error" data-table="{_e(name)}">{_e(dose["error"])}</p>'
    rows = [
        [_e(b["label"]), str(b["n"]), _fmt(b["mean"]), _fmt(b["ci_low"]), _fmt(b["ci_high"])]
        for b in dose["bins"]
    ]
    return _table(
        name,
        [f"{dose['usage']} bin", "participants", "mean", "CI low", "CI high"],
        rows,
        f"{outcome} by quartile of {dose['usage']} (participant means)",
    )


def _attrition_table(attrition: pd.DataFrame | None) -> str:
    if attrition is None or len(attrition) == 0:
        return '<p data-table="attrition">No invitations yet.</p>'
    rows = [
        [_e(r.by), _e(r.group), str(r.last_wave), str(r.n), _fmt(float(r.share))]
        for r in attrition.itertuples(index=False)
    ]
    return _table(
        "attrition",
        ["by", "group", "last completed wave", "participants", "share"],
        rows,
        "Last completed wave (−1: none)",
    )


# --- page -------------------------------------------------------------------------------------


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
    meta_rows = [
        ("Study", meta.get("study")),
        ("Protocol version", meta.get("protocol_version")),
        ("Data snapshot (SHA-256)", meta.get("data_hash")),
        ("Code version", meta.get("code_version")),
        ("Created", meta.get("created_at")),
        (
            "Participants / rows",
            f"{results.get('data', {}).get('n_participants', 0)} / "
            f"{results.get('data', {}).get('n_rows', 0)}",
        ),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        '<dl class="meta">'
        + "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in meta_rows)
        + "</dl>",
        look_html(results),
        "<h2>Primary question</h2>",
        _inference_note(results),
        _primary_table(results),
        multiplicity_html(results),
    ]
    for outcome in outcomes:
        entry = results.get("outcomes", {}).get(outcome, {})
        parts.append(f"<h2>{_e(outcome)}</h2>")
        if "usage_model" in entry:
            parts.append(
                _model_table(
                    f"usage_model:{outcome}",
                    entry["usage_model"],
                    "Within/between-person usage model",
                )
            )
        if "arm_time_model" in entry:
            parts.append(
                _model_table(
                    f"arm_time_model:{outcome}", entry["arm_time_model"], "Arm × time model"
                )
            )
        parts.append(arm_contrast_html(outcome, results))
        if "dose_response" in entry:
            parts.append(_dose_table(outcome, entry["dose_response"]))
    parts += [
        "<h2>Figures</h2>",
        trajectory_figure(linked, outcomes),
        within_slope_figure(linked, outcomes, predictors[0] if predictors else None),
        compliance_figure(figures_data.get("compliance")),
        usage_figure(figures_data.get("messages_per_day")),
        "<h2>Attrition</h2>",
        _attrition_table(figures_data.get("attrition")),
        "</body></html>",
    ]
    return "\n".join(parts)
