"""What a methods reviewer asks for beyond the coefficient tables, computed for the report.

Pure (no Django), JSON-able output. Three entry points, each called with one line:

* :func:`model_supplement` from :func:`analysis.plan.fit_summary`: per fitted model, R²
  (Nakagawa & Schielzeth 2013; Johnson 2014), standardised effects, profile-likelihood CIs of
  the variance components, residual and random-effect diagnostics, the rows left out with their
  reasons, and model-based means per arm and wave when the model has both;
* :func:`usage_window_observed` from :func:`analysis.pipeline.analyse`: which linked rows have a
  usage window that lies after enrolment (the dose-response table and the within-person figure
  use only those, so the lowest usage bin is never "people who had not started yet");
* :func:`table1` from :func:`analysis.pipeline.analyse`: the cohort by arm.

Every part that fails is reported as ``{"error": "…"}`` in its place; a report is never lost to
a summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import pandas as pd

from analysis.features import WINDOW_COLUMNS
from analysis.linking import DEFAULT_PREDICTORS
from analysis.stats.diagnostics import predicted_means, residual_diagnostics
from analysis.stats.mixedlm import MixedLMResult
from analysis.stats.profile_ci import variance_component_cis
from analysis.stats.r2 import nakagawa_r2, standardised_effects

__all__ = [
    "DOSE_RULE",
    "EXCLUSION_REASONS",
    "dose_rows",
    "frame_exclusions",
    "model_supplement",
    "table1",
    "usage_window_observed",
    "without_model_supplement",
]

OBSERVED = "usage_window_observed"
DOSE_RULE = (
    "Only occasions with an observed usage window are binned: a window that starts before "
    "the participant enrolled (the baseline survey) has no usage, not zero usage, and is "
    "left out, so a low-usage bin cannot be made of people who had not started yet."
)

# Reasons in the order a row is attributed to them (first that applies).
EXCLUSION_REASONS = (
    "missing outcome",
    "no usage window (before enrolment) or usage undefined",
    "no previous occasion (lagged term)",
    "missing covariate",
    "no participant",
)
_USAGE = frozenset(WINDOW_COLUMNS) | frozenset(DEFAULT_PREDICTORS)
_USAGE_SUFFIXES = ("_within", "_between", "_log1p", "_log", "_rank", "_c", "_pre")
_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError, KeyError, IndexError)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _clean(value: Any) -> Any:
    """Non-finite floats become None, recursively, so the results stay strict JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return _num(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _guarded(compute: Callable[[], Any]) -> Any:
    try:
        return _clean(compute())
    except _ERRORS as exc:
        return {"error": str(exc) or type(exc).__name__}


# --- per model --------------------------------------------------------------------------------


def _reason_rank(column: str, response: str, groups: str) -> int:
    if column == response:
        return 0
    if "_lag" in column:
        return 2
    base = column
    for suffix in _USAGE_SUFFIXES:
        base = base.removesuffix(suffix)
    if base in _USAGE:
        return 1
    if column == groups:
        return 4
    return 3


def exclusions(result: MixedLMResult) -> dict[str, Any]:
    """Rows offered to the model, rows used, and the rows left out counted by reason."""
    design = result.design
    if design is None:
        raise ValueError("the fit carries no design")
    counts = dict.fromkeys(EXCLUSION_REASONS, 0)
    columns: dict[str, set[str]] = {reason: set() for reason in EXCLUSION_REASONS}
    for missing, n in design.dropped.items():
        if not missing:
            continue
        rank = min(_reason_rank(c, design.response, result.groups) for c in missing)
        reason = EXCLUSION_REASONS[rank]
        counts[reason] += n
        columns[reason].update(
            c for c in missing if _reason_rank(c, design.response, result.groups) == rank
        )
    return {
        "n_input": design.n_input,
        "n_used": result.n_obs,
        "reasons": [
            {"reason": reason, "n": counts[reason], "columns": sorted(columns[reason])}
            for reason in EXCLUSION_REASONS
            if counts[reason]
        ],
    }


def frame_exclusions(
    linked: pd.DataFrame,
    *,
    outcome: str,
    usage: Sequence[str],
    lags: Sequence[str],
    others: Sequence[str],
    n_used: int,
    groups: str = "participant",
) -> dict[str, Any]:
    """:func:`exclusions` for a model fitted on a frame already cut to its complete rows.

    Why: the usage models build their terms over the rows they use
    (:func:`analysis.plan.model_frame`), so their fit never sees the rows left out and
    :func:`exclusions` would report every offered row as used. Here the rows offered are the
    linked table's, each counted once under the first of :data:`EXCLUSION_REASONS` that applies
    (the report's column order). ``usage``: usage columns and "window before enrolment" flags
    (a true flag or a missing value excludes the row); ``lags``: the previous occasion's outcome;
    ``others``: covariates and time.
    """

    def missing(column: str) -> pd.Series:
        if column not in linked.columns:
            return pd.Series(True, index=linked.index)
        if column.startswith("window_before_enrollment"):
            return linked[column].fillna(False).astype(bool)
        return linked[column].isna()

    groups_of_columns = [[outcome], list(usage), list(lags), list(others), [groups]]
    remaining = pd.Series(True, index=linked.index)
    reasons = []
    for reason, columns in zip(EXCLUSION_REASONS, groups_of_columns, strict=True):
        masks = {column: missing(column) for column in columns}
        hit = pd.Series(False, index=linked.index)
        for mask in masks.values():
            hit |= mask
        counted = remaining & hit
        if counted.any():
            reasons.append(
                {
                    "reason": reason,
                    "n": int(counted.sum()),
                    "columns": sorted(c for c, m in masks.items() if (counted & m).any()),
                }
            )
        remaining &= ~hit
    return {"n_input": len(linked), "n_used": int(n_used), "reasons": reasons}


_SUPPLEMENT_ON: ContextVar[bool] = ContextVar("model_supplement_on", default=True)


@contextmanager
def without_model_supplement() -> Iterator[None]:
    """Fits summarised inside this block get no extras (the profile-likelihood intervals cost
    a few times the fit): for callers that refit many times and read only the estimates,
    e.g. multiple imputation or a simulation benchmark."""
    token = _SUPPLEMENT_ON.set(False)
    try:
        yield
    finally:
        _SUPPLEMENT_ON.reset(token)


def model_supplement(result: MixedLMResult) -> dict[str, Any]:
    """The reviewer's extras for one fit (keys added to its :func:`fit_summary` dict)."""
    if result.design is None or not _SUPPLEMENT_ON.get():
        return {}
    out: dict[str, Any] = {
        "r2": _guarded(lambda: nakagawa_r2(result)),
        "standardised": _guarded(lambda: standardised_effects(result)),
        "variance_ci": _guarded(lambda: variance_component_cis(result)),
        "diagnostics": _guarded(lambda: residual_diagnostics(result)),
        "exclusions": _guarded(lambda: exclusions(result)),
    }
    columns = set(result.design.frame.columns)
    if {"arm", "wave"} <= columns and "C(arm)" in result.formula.replace(" ", ""):
        out["trajectories"] = _guarded(lambda: predicted_means(result, ("arm", "wave")))
    return out


# --- linked rows ------------------------------------------------------------------------------


def usage_window_observed(linked: pd.DataFrame, participants: pd.DataFrame) -> pd.Series:
    """True where the row's usage window starts on or after the local date of enrolment.

    ``linked`` has ``participant`` and ``start`` (the window's first local date, as
    :func:`analysis.linking.link_usage_to_outcomes` writes it); ``participants`` has
    ``participant``, ``enrolled_at`` (UTC) and optionally ``timezone``. Without the columns to
    decide, every row counts as observed.
    """
    if "window_before_enrollment" in linked:
        # The linking step already decided it (same rule); one source of truth.
        return ~linked["window_before_enrollment"].fillna(False).astype(bool)
    if len(linked) == 0 or "start" not in linked or "enrolled_at" not in participants:
        return pd.Series(True, index=linked.index, dtype=bool)
    people = participants.drop_duplicates("participant").set_index("participant")
    enrolled = pd.to_datetime(people["enrolled_at"], utc=True)
    zones = people["timezone"] if "timezone" in people else pd.Series("UTC", index=people.index)
    local_day = {}
    for code, moment in enrolled.items():
        if pd.isna(moment):
            continue
        try:
            moment = moment.tz_convert(zones.get(code) or "UTC")
        except (TypeError, ValueError, KeyError):
            moment = moment.tz_convert("UTC")
        local_day[code] = moment.tz_localize(None).normalize()
    first_day = linked["participant"].map(local_day)
    start = pd.to_datetime(linked["start"])
    return (start >= first_day).fillna(False).astype(bool)


def dose_rows(linked: pd.DataFrame, usage: str) -> pd.DataFrame:
    """The rows a dose-response table may bin: usage present and its window observed."""
    keep = linked[usage].notna() if usage in linked else pd.Series(False, index=linked.index)
    if OBSERVED in linked:
        keep &= linked[OBSERVED].astype(bool)
    return linked[keep]


# --- Table 1 ----------------------------------------------------------------------------------


def _mean_sd(values: pd.Series) -> dict[str, Any]:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return {
        "n": int(values.size),
        "mean": _num(values.mean()) if values.size else None,
        "sd": _num(values.std(ddof=1)) if values.size > 1 else None,
    }


def _median_iqr(values: pd.Series) -> dict[str, Any]:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.size == 0:
        return {"n": 0, "median": None, "q1": None, "q3": None}
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return {"n": int(values.size), "median": _num(median), "q1": _num(q1), "q3": _num(q3)}


def _region(zone: Any) -> str:
    if not isinstance(zone, str) or not zone:
        return "unknown"
    return zone.split("/", 1)[0] if "/" in zone else zone


def table1(
    participants: pd.DataFrame,
    *,
    daily: pd.DataFrame | None,
    invitations: pd.DataFrame | None,
    linked: pd.DataFrame,
    outcomes: Sequence[str],
) -> dict[str, Any]:
    """The cohort by arm: size, status, language, time-zone region, baseline outcomes, usage
    and survey completion. ``{"groups": [...], "rows": [{"section", "label", "stat", "values":
    {group: {...}}}]}``; ``stat`` is ``count`` (n, share), ``mean_sd`` or ``median_iqr``."""
    people = participants.drop_duplicates("participant").copy()
    if "arm" in people:
        people["arm"] = people["arm"].fillna("unallocated").astype(str)
    else:
        people["arm"] = "all"
    arms = sorted(people["arm"].unique())
    groups = [*arms, "All"] if len(arms) > 1 else ["All"]

    def members(group: str) -> pd.Index:
        chosen = people if group == "All" else people[people["arm"] == group]
        return pd.Index(chosen["participant"])

    rows: list[dict[str, Any]] = []

    def add(section: str, label: str, stat: str, per_group: Callable[[pd.Index], Any]) -> None:
        rows.append(
            {
                "section": section,
                "label": label,
                "stat": stat,
                "values": {g: _clean(per_group(members(g))) for g in groups},
            }
        )

    def share_of(column: pd.Series, value: Any) -> Callable[[pd.Index], dict[str, Any]]:
        def compute(codes: pd.Index) -> dict[str, Any]:
            mine = column[people["participant"].isin(codes)]
            n = int((mine == value).sum())
            return {"n": n, "share": n / len(mine) if len(mine) else None}

        return compute

    add("Participants", "n", "count", lambda codes: {"n": len(codes), "share": None})
    for column, section in (("status", "Status"), ("language", "Language")):
        if column in people:
            values = people[column].fillna("unknown").astype(str)
            for value in sorted(values.unique()):
                add(section, value, "count", share_of(values, value))
    if "timezone" in people:
        regions = people["timezone"].map(_region)
        for value in sorted(regions.unique()):
            add("Time-zone region", value, "count", share_of(regions, value))

    if len(linked) and "wave" in linked:
        baseline = (
            linked[linked["wave"] == linked["wave"].min()]
            .sort_values("submitted_at" if "submitted_at" in linked else "wave")
            .drop_duplicates("participant")
            .set_index("participant")
        )
        wave = linked["wave"].min()
        for outcome in outcomes:
            if outcome in baseline:
                series = baseline[outcome]
                add(
                    f"Outcome at the first occasion (wave {wave:g})",
                    outcome,
                    "mean_sd",
                    lambda codes, s=series: _mean_sd(s[s.index.isin(codes)]),
                )

    if daily is not None and len(daily) and "messages_sent" in daily:
        used = daily[daily["messages_sent"] > 0]
        per_person = used.groupby("participant")["messages_sent"].agg(["sum", "size"])

        def usage(series: pd.Series) -> Callable[[pd.Index], dict[str, Any]]:
            # People without a single day of use count as 0 (not as missing).
            return lambda codes: _median_iqr(series.reindex(codes).fillna(0))

        section = "Usage (whole follow-up)"
        add(section, "days with use", "median_iqr", usage(per_person["size"]))
        add(section, "messages sent", "median_iqr", usage(per_person["sum"]))
        add(
            section,
            "messages per day with use",
            "median_iqr",
            usage(per_person["sum"] / per_person["size"]),
        )

    if invitations is not None and len(invitations) and "status" in invitations:
        done = invitations.assign(done=invitations["status"] == "completed")
        totals = done.groupby("participant")["done"].agg(["sum", "size"])

        def completion(codes: pd.Index) -> dict[str, Any]:
            mine = totals[totals.index.isin(codes)]
            invited = int(mine["size"].sum())
            completed = int(mine["sum"].sum())
            return {"n": completed, "share": completed / invited if invited else None}

        add("Surveys", "invitations completed", "count", completion)
        add(
            "Surveys",
            "completed per participant",
            "median_iqr",
            lambda codes: _median_iqr(totals["sum"].reindex(codes).fillna(0)),
        )
    return {"groups": groups, "rows": rows}


def exclusion_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten every model's ``exclusions`` into rows (outcome, model, counts) for the report."""
    out = []
    for outcome, entry in (results.get("outcomes") or {}).items():
        for key, model in entry.items():
            if isinstance(model, Mapping) and isinstance(model.get("exclusions"), Mapping):
                out.append({"outcome": outcome, "model": key, **model["exclusions"]})
    return out
