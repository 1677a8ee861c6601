"""Report fragment for the factorial analysis (HTML strings, every value escaped).

Kept apart from :mod:`analysis.report` like :mod:`analysis.report_arm`: one function takes the
stored ``results`` and returns the main-effect and interaction tables for one outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.report_arm import _e, _f, _table

__all__ = ["factorial_html"]


def _test_cells(test: Mapping[str, Any]) -> list[str]:
    return [
        _f(test.get("F")),
        f"{test.get('df_num')}, {_f(test.get('df_den'), 3)}",
        _f(test.get("p"), 4),
    ]


def factorial_html(outcome: str, results: Mapping[str, Any]) -> str:
    """Main effects (per level and jointly) and interactions at the end wave, for one outcome."""
    entry = (results.get("factorial") or {}).get(outcome)
    if not entry:
        return ""
    name = f"factorial:{outcome}"
    if "error" in entry:
        return (
            f'<p class="error" data-table="{_e(name)}">Factorial analysis '
            f"({_e(', '.join(entry.get('factors', [])))}): {_e(entry['error'])}</p>"
        )
    p_method = entry["p_method"]
    ci_header = ["estimate", "95% CI low", "95% CI high", "df", f"p ({p_method})"]

    def ci_cells(row: Mapping[str, Any]) -> list[str]:
        return [
            _f(row["estimate"]),
            _f(row["ci_low"]),
            _f(row["ci_high"]),
            _f(row["df"], 3),
            _f(row["p"], 4),
        ]

    main_rows = []
    for effect in entry["main_effects"]:
        for level in effect["level_effects"]:
            main_rows.append(
                [_e(effect["factor"]), _e(f"{level['level']} (effect)"), *ci_cells(level)]
            )
        for diff in effect["differences"]:
            main_rows.append(
                [
                    _e(effect["factor"]),
                    _e(f"{diff['level']} − {diff['reference']}"),
                    *ci_cells(diff),
                ]
            )
    wave = _f(entry["end_wave"], 3)
    main = _table(
        f"{name}:main_effects",
        ["factor", "level", *ci_header],
        main_rows,
        f"Main effects at wave {wave} (effect coding: a level's effect is its deviation from "
        "the grand mean; differences are between level means)",
    )
    interaction_rows = [
        [_e(" × ".join(i["factors"])), _e(c["term"]), *ci_cells(c)]
        for i in entry["interactions"]
        for c in i["coefficients"]
    ]
    interactions = (
        _table(
            f"{name}:interactions",
            ["interaction", "effect-coded term", *ci_header],
            interaction_rows,
            f"Interaction coefficients at wave {wave} (effect coding)",
        )
        if interaction_rows
        else ""
    )
    joint_rows = [
        [_e(f"main effect of {m['factor']}"), *_test_cells(m["test"])]
        for m in entry["main_effects"]
    ] + [
        [_e("interaction " + " × ".join(i["factors"])), *_test_cells(i["test"])]
        for i in entry["interactions"]
    ]
    joint = _table(
        f"{name}:tests",
        ["term", "F", "df (num, den)", "p"],
        joint_rows,
        "Joint tests: all levels equal (F, Satterthwaite denominator df)",
    )
    adjusted = [*entry.get("strata", []), *entry.get("covariates", [])]
    notes = [
        _e(entry["estimand"]),
        "coding: " + _e(entry["coding"]),
        "adjusted for " + (_e(", ".join(adjusted)) if adjusted else "no covariates"),
        f"n = {entry['n_obs']} observations, {entry['n_groups']} participants",
        f"p-values and CIs: {_e(p_method)}",
    ]
    for item in entry.get("dropped_covariates", []):
        notes.append(f"{_e(item['name'])} left out: {_e(item['reason'])}")
    if entry.get("waves_skipped"):
        notes.append(
            "waves without answers from every cell: " + _e(", ".join(entry["waves_skipped"]))
        )
    return main + interactions + joint + "<p>" + "; ".join(notes) + ".</p>"
