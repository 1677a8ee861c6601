"""Report fragments for the arm contrast, the primary family and the look (HTML strings).

Kept apart from :mod:`analysis.report` so that module's owner can move them into its templates
as they are: each function takes the stored ``results`` and returns escaped HTML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from html import escape
from typing import Any

__all__ = ["arm_contrast_html", "look_html", "multiplicity_html"]

LABELS = {
    "clda": "cLDA",
    "ancova": "ANCOVA on baseline",
    # A classifier-rate outcome (analysis/classifier_outcomes.py): no baseline exists.
    "arm_by_wave_followup": "arm × wave over the follow-up occasions, no baseline",
}


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return (
        f"{float(value):.{digits}g}" if abs(float(value)) < 1e-3 else f"{float(value):.{digits}f}"
    )


def _table(name: str, header: list[str], rows: list[list[str]], caption: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f'<table data-table="{_e(name)}"><caption>{_e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def look_html(results: Mapping[str, Any]) -> str:
    """One line: interim or final, and how many completed looks preceded this one."""
    look = results.get("look")
    if not look:
        return ""
    before = int(look.get("previous_looks") or 0)
    kind = "Final analysis" if look.get("kind") == "final" else "Interim look"
    detail = (
        "no earlier analysis of this study"
        if before == 0
        else f"{before} earlier completed analysis run{'s' if before != 1 else ''} "
        f"({look.get('previous_interim', 0)} interim, {look.get('previous_final', 0)} final)"
    )
    return (
        f'<p data-look="{_e(look.get("kind"))}" data-previous-looks="{before}">'
        f"{_e(kind)} (look {int(look.get('number') or before + 1)}): {_e(detail)}.</p>"
    )


def multiplicity_html(results: Mapping[str, Any]) -> str:
    """The primary family with raw and adjusted p-values; says every other p is exploratory."""
    multi = results.get("multiplicity")
    if not multi:
        return ""
    # Every p column names its test, as the other tables of the report do.
    p_method = (results.get("primary") or {}).get("p_method") or "Satterthwaite t"
    rows = [
        [
            _e(r["outcome"]),
            _e(r["term"] + (f" ({r['arm']})" if r.get("arm") else "")),
            _f(r.get("p"), 4),
            _f(r.get("p_adjusted"), 4),
            _e(r.get("missing", "")),
        ]
        for r in multi.get("family", [])
    ]
    caption = (
        f"Primary family: {len(rows)} test(s), {multi['method']} correction ({multi['error_rate']})"
    )
    note = (
        "<p>Every other p-value in this report is exploratory: unadjusted, and not evidence "
        "on its own.</p>"
    )
    return (
        _table(
            "multiplicity",
            ["outcome", "term", f"p ({p_method})", f"adjusted p ({multi['method']})", "note"],
            rows,
            caption,
        )
        + note
    )


def arm_contrast_html(outcome: str, results: Mapping[str, Any]) -> str:
    """Model-based means per arm and wave, and the end-of-study contrast, for one outcome."""
    contrast = (results.get("arm_contrast") or {}).get(outcome)
    if not contrast:
        return ""
    name = f"arm_contrast:{outcome}"
    label = LABELS.get(contrast.get("method"), "ANCOVA on baseline")
    if "error" in contrast:
        return (
            f'<p class="error" data-table="{_e(name)}">Arm contrast ({label}): '
            f"{_e(contrast['error'])}</p>"
        )
    adjusted = [*contrast.get("strata", []), *contrast.get("covariates", [])]
    means = _table(
        f"{name}:means",
        ["arm", "wave", "mean", "SE", "95% CI low", "95% CI high", "df"],
        [
            [
                _e(m["arm"]),
                _f(m["wave"], 3),
                _f(m["estimate"]),
                _f(m["se"]),
                _f(m["ci_low"]),
                _f(m["ci_high"]),
                _f(m["df"], 3),
            ]
            for m in contrast["means"]
        ],
        f"Model-based means by arm and wave ({label})",
    )
    end = _table(
        name,
        [
            "arm vs reference",
            "wave",
            "difference",
            "95% CI low",
            "95% CI high",
            "df",
            f"p ({contrast['p_method']})",
            "family",
        ],
        [
            [
                _e(f"{d['arm']} − {d['reference']}"),
                _f(d["wave"], 3),
                _f(d["estimate"]),
                _f(d["ci_low"]),
                _f(d["ci_high"]),
                _f(d["df"], 3),
                _f(d["p"], 4),
                _e(d.get("family", "")),
            ]
            for d in contrast["end_of_study"]
        ],
        f"End-of-study arm contrast ({label})",
    )
    notes = [
        _e(contrast["estimand"]),
        "adjusted for " + (_e(", ".join(adjusted)) if adjusted else "no covariates"),
        f"n = {contrast['n_obs']} observations, {contrast['n_groups']} participants",
        f"p-values and CIs: {_e(contrast['p_method'])}",
    ]
    for item in contrast.get("dropped_covariates", []):
        notes.append(f"{_e(item['name'])} left out: {_e(item['reason'])}")
    if contrast.get("waves_skipped"):
        notes.append(
            "waves without answers from every arm: " + _e(", ".join(contrast["waves_skipped"]))
        )
    return end + means + "<p>" + "; ".join(notes) + ".</p>"
