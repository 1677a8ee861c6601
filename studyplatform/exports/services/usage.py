"""The usage-feature tables of an export: `usage_daily` and `usage_waves`.

Computed by the analysis pipeline itself (`analysis.data.load_study_frames`,
`analysis.features.daily_features`, `analysis.linking.link_usage_to_outcomes`) with the
protocol's analysis settings, so an exported table holds the same numbers an analysis run of
the same data uses. Only the identifying parts are rewritten: the participant code becomes the
export's pseudonym, dates become day numbers or shifted dates, the schedule's occurrence key
(which can hold a date or a session id) becomes an ordinal, and the arm is the published one.

Unlike the message tables, these rows exist for every exported participant whatever their
share_chats choice: they are counts, durations and word-list rates, never text.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis.classifier_outcomes import survey_instruments
from analysis.data import load_study_frames
from analysis.features import daily_features
from analysis.linking import DEFAULT_PREDICTORS, link_usage_to_outcomes, score_columns
from studyplatform.studies.models import Study

from .. import codebook as cb

if TYPE_CHECKING:
    from .builder import Builder, Person

BATCH = 2000
DEFAULT_WINDOW_DAYS = 7


@dataclass
class UsageFrames:
    """The two usage frames of the exported participants, and what shapes their columns."""

    daily: pd.DataFrame
    waves: pd.DataFrame
    scores: tuple[str, ...]
    predictors: tuple[str, ...]


def usage_frames_load(*, study: Study, codes: Sequence[str], include_pilot: bool) -> UsageFrames:
    """Daily usage and the usage-to-outcome linked table for the participants with `codes`.

    Settings come from the protocol's `analysis` section (window_days, session_gap_minutes,
    outcomes, predictors), as an analysis run would read them.
    """
    plan = dict(study.protocol.get("analysis") or {})
    outcomes = list(plan.get("outcomes") or [])
    frames = load_study_frames(
        study,
        include_pilot=include_pilot,
        # Text is needed for the text-marker counts; it is read here and never written out.
        text=True,
        # As the analysis does: only the outcome instruments make survey occasions, so daily
        # EMA answers do not become occasions of their own.
        instruments=survey_instruments(outcomes),
    )
    # The exported participants only: withdrawn-with-deletion (and unrequested pilots) never
    # reach the feature code, so nothing computed from them can leak into a window.
    keep = set(codes)
    participants = frames.participants[frames.participants["participant"].isin(keep)]
    participants = participants.reset_index(drop=True)
    messages = frames.messages[frames.messages["participant"].isin(keep)].reset_index(drop=True)
    responses = frames.responses[frames.responses["participant"].isin(keep)]
    responses = responses.reset_index(drop=True)
    daily = daily_features(
        messages,
        participants,
        session_gap_minutes=float(plan.get("session_gap_minutes", 30)),
        text=True,
    )
    waves = link_usage_to_outcomes(
        daily,
        participants,
        responses,
        window_days=int(plan.get("window_days", DEFAULT_WINDOW_DAYS)),
        predictors=plan.get("predictors") or None,
        # Every scheduled occasion, so a lag after a missed survey is missing (as in analyses).
        invitations=frames.invitations[frames.invitations["participant"].isin(keep)],
    )
    predictors = tuple(
        p for p in (plan.get("predictors") or DEFAULT_PREDICTORS) if f"{p}_within" in waves.columns
    )
    return UsageFrames(daily, waves, tuple(score_columns(responses)), predictors)


def _typed(value: Any, kind: str) -> Any:
    """A pandas cell as the plain Python value its codebook type promises (NaN -> None)."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if kind == "integer":
        # Window sums arrive as floats after the linking step fills missing windows with 0.
        return round(float(value))
    if kind == "number":
        return float(value)
    if kind == "boolean":
        return bool(value)
    return str(value)


def _check_columns(frame: pd.DataFrame, table: str, known: set[str]) -> None:
    # A new feature column in analysis.features must be documented before it can be exported;
    # failing here is better than writing it undocumented or dropping it silently.
    unknown = [c for c in frame.columns if c not in known]
    if unknown:
        raise ValueError(f"{table}: columns not in the codebook: {', '.join(unknown)}")


def _local_day(person: Person, prefix: str, day: Any, relative: bool) -> dict[str, Any]:
    """A local calendar date (naive midnight) as a day number or a shifted date."""
    name = f"{prefix}_" if prefix else ""
    date = pd.Timestamp(day).date() if day is not None and not pd.isna(day) else None
    if relative:
        value = (date - person.enrolled_local).days if date is not None else None
        return {f"{name}day": value}
    shifted = (
        (date - dt.timedelta(days=person.shift_days)).isoformat()
        if date is not None and person.shift_days is not None
        else None
    )
    return {f"{name}date": shifted}


def usage_daily_rows(
    builder: Builder, usage: UsageFrames, by_code: Mapping[str, Person], shape: cb.StudyShape
) -> Iterator[list[dict[str, Any]]]:
    """usage_daily rows in batches: one per participant and local day with a message."""
    daily = usage.daily
    known = {"participant", "date", "study_day"} | set(cb.USAGE_FEATURES)
    _check_columns(daily, "usage_daily", known)
    kinds = {c.name: c.type for c in cb.table_columns("usage_daily", shape)}
    relative = shape.dates == "relative"
    batch: list[dict[str, Any]] = []
    for record in daily.to_dict("records"):
        person = by_code.get(record["participant"])
        if person is None:
            continue
        row: dict[str, Any] = {"participant_id": person.pid}
        row.update(_local_day(person, "", record["date"], relative))
        for feature in cb.USAGE_DAILY_FEATURES:
            row[feature] = _typed(record.get(feature), kinds[feature])
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    yield batch


def usage_waves_rows(
    builder: Builder,
    usage: UsageFrames,
    by_code: Mapping[str, Person],
    shape: cb.StudyShape,
    published: Mapping[str, Mapping[str, Any]],
) -> Iterator[list[dict[str, Any]]]:
    """usage_waves rows: one per participant and completed survey occasion."""
    waves = usage.waves
    derived = {f"{p}_{part}" for p in usage.predictors for part in ("within", "between")}
    lagged = {f"{c}_lag" for c in (*usage.scores, *usage.predictors)}
    meta = {"participant", "arm", "entry", "occurrence", "wave", "submitted_at", "start", "end"}
    # The linking step's helpers for the models (a window before enrolment is already NaN in
    # every usage column; weeks and occasion are recomputable from the exported dates): known,
    # not exported.
    meta |= {"window_before_enrollment", "window_before_enrollment_lag", "weeks", "occasion"}
    _check_columns(
        waves, "usage_waves", meta | set(cb.USAGE_FEATURES) | set(usage.scores) | derived | lagged
    )
    if len(waves):
        # Rows are sorted by participant and submission time, so this numbers each
        # participant's occasions of an entry in the order they were completed.
        order = waves.groupby(["participant", "entry"], sort=False).cumcount() + 1
        waves = waves.assign(occurrence_number=order)
    columns = cb.table_columns("usage_waves", shape)
    kinds = {c.name: c.type for c in columns}
    copied = [c.name for c in columns if c.name in waves.columns and c.name not in meta]
    relative = shape.dates == "relative"
    batch: list[dict[str, Any]] = []
    for record in waves.to_dict("records"):
        person = by_code.get(record["participant"])
        if person is None:
            continue
        row: dict[str, Any] = {
            "participant_id": person.pid,
            # As published in participants, so a suppressed arm stays suppressed.
            "arm": published[person.pid]["arm"],
            "entry": record["entry"],
        }
        submitted = record["submitted_at"]
        row.update(
            builder.when(
                person, "submitted", None if pd.isna(submitted) else submitted.to_pydatetime()
            )
        )
        row["wave"] = _typed(record["wave"], "integer")
        row.update(_local_day(person, "window_start", record["start"], relative))
        row.update(_local_day(person, "window_end", record["end"], relative))
        for name in copied:
            row[name] = _typed(record.get(name), kinds[name])
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    yield batch
