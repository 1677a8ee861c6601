"""Linking usage to outcomes: one analysis row per participant and completed survey occasion.

Pure pandas (no Django): the Django side (``analysis.data``) builds plain frames, this module
windows the daily usage frame before every completed survey with
:func:`analysis.features.windows_before` / :func:`analysis.features.window_features`, pivots the
scores to ``<instrument>.<score>`` columns, and adds what a longitudinal model needs: the
time since enrolment at completion (``weeks``), the occasion index (``occasion``), previous
occasion (lagged) columns, person-mean columns for exports (``<x>_within`` / ``<x>_between``;
the models recompute them over their own rows, :mod:`analysis.plan`) and, from imported chat
history, a pre-enrolment baseline per participant (``<x>_pre``).

Usage is only ever observed from enrolment on: a window that starts before the local date of
enrolment is *missing* (NaN in every usage column, ``window_before_enrollment`` True), never 0.
Imported history (messages with ``imported=True``, from ``studyplatform.chat.importing``) never
enters a window; it becomes the ``<x>_pre`` covariate instead.

Input frames (see ``docs/analysis.md``):

* ``daily``: the output of :func:`analysis.features.daily_usage` / ``daily_features``;
* ``participants``: ``participant, timezone, enrolled_at, arm, language``;
* ``responses``: one row per submitted instrument, ``participant, entry, occurrence, wave,
  submitted_at, instrument, scores`` (``scores`` a dict of score name → number). ``wave`` may be
  left out when ``opens_at`` is given; :func:`assign_waves` then derives it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.features import WINDOW_COLUMNS, daily_features, window_features, windows_before

__all__ = [
    "COUNT_COLUMNS",
    "DEFAULT_PREDICTORS",
    "assign_waves",
    "attrition_summary",
    "link_usage_to_outcomes",
    "pre_enrollment_daily",
    "score_columns",
]

# Window columns that are counts or sums: a participant without usage in a window has 0 of
# them, never NaN (window_features already guarantees this; we re-assert it after merging).
COUNT_COLUMNS: tuple[str, ...] = (
    "days_active",
    "messages_sent",
    "words_sent",
    "conversation_days",
    "sessions",
    "active_minutes",
    "night_messages",
    "assistant_messages",
    "messages_per_day",
    "words_per_day",
    "sessions_per_day",
    "active_minutes_per_day",
    "share_days_active",
)

# Usage columns decomposed into within/between parts and lagged when the caller names none.
DEFAULT_PREDICTORS: tuple[str, ...] = (
    "messages_sent",
    "messages_per_day",
    "words_sent",
    "sessions",
    "active_minutes",
    "days_active",
    "share_days_active",
    "night_share",
    "mean_session_minutes",
)

WAVE_DAYS = 7
SECONDS_PER_WEEK = 7 * 86_400


def assign_waves(
    frame: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    at: str = "opens_at",
    every_days: int = WAVE_DAYS,
) -> pd.Series:
    """Analysis wave of each row: whole ``every_days`` periods from enrolment to ``at``, rounded.

    Why not the invitation's own ``wave``: it is per schedule entry (baseline and exit have none,
    weekly starts at 1), while a model needs one time axis across entries. Rounding the study
    time of the occasion's *scheduled* opening puts baseline at 0, the weekly surveys at 1, 2, …
    and an exit survey at the end, and a missed occasion leaves a gap instead of shifting the
    later waves.
    """
    if len(frame) == 0:
        return pd.Series(pd.array([], dtype="Int64"), index=frame.index)
    enrolled = participants.set_index("participant")["enrolled_at"]
    start = frame["participant"].map(enrolled)
    elapsed = (pd.to_datetime(frame[at], utc=True) - pd.to_datetime(start, utc=True)).dt
    days = elapsed.total_seconds() / 86_400
    return np.floor(days / every_days + 0.5).astype("Int64")


def score_columns(responses: pd.DataFrame) -> list[str]:
    """The ``<instrument>.<score>`` columns the responses give, sorted."""
    names: set[str] = set()
    for instrument, scores in zip(responses["instrument"], responses["scores"], strict=True):
        for key in scores or {}:
            names.add(f"{instrument}.{key}")
    return sorted(names)


def _occasions(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per participant × survey occasion with every score as a column."""
    keys = ["participant", "entry", "occurrence"]
    records = []
    for row in responses.itertuples(index=False):
        for key, value in (row.scores or {}).items():
            records.append(
                (row.participant, row.entry, row.occurrence, f"{row.instrument}.{key}", value)
            )
    long = pd.DataFrame(records, columns=[*keys, "column", "value"])
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    wide = long.pivot_table(index=keys, columns="column", values="value", aggfunc="last")
    wide.columns.name = None
    # The occasion is complete when its last instrument was submitted: that instant is the
    # reference point of the usage window.
    meta = responses.groupby(keys, sort=False).agg(
        wave=("wave", "max"), submitted_at=("submitted_at", "max")
    )
    return meta.join(wide, how="left").reset_index()


def _occasion_index(linked: pd.DataFrame, invitations: pd.DataFrame | None) -> pd.Series:
    """The position of each row's occasion in the participant's schedule (0, 1, 2, …).

    Lags are taken by this index, not by ``wave``: waves are rounded weeks, so a monthly
    schedule has waves 0, 4, 9, 13 and "wave − 1" never exists. With ``invitations``
    (``participant, entry, occurrence, opens_at``: every scheduled occasion, answered or not)
    the index is the rank of the occasion's opening among the participant's invitations, so a
    missed occasion still takes its place and the next answer has no lag. Without them (exports
    pass none) the grid is the sorted set of waves any participant answered, which gives the
    same index whenever the schedule is the same for everyone.
    """
    if invitations is not None and len(invitations) and "opens_at" in invitations.columns:
        inv = invitations[["participant", "entry", "occurrence", "opens_at"]].copy()
        inv["opens_at"] = pd.to_datetime(inv["opens_at"], utc=True)
        inv = inv.drop_duplicates(["participant", "entry", "occurrence"])
        inv = inv.sort_values(["participant", "opens_at"], kind="stable")
        inv["occasion"] = inv.groupby("participant", sort=False).cumcount().astype(float)
        merged = linked[["participant", "entry", "occurrence"]].merge(
            inv[["participant", "entry", "occurrence", "occasion"]],
            on=["participant", "entry", "occurrence"],
            how="left",
        )
        if merged["occasion"].notna().all():
            return pd.Series(merged["occasion"].to_numpy(), index=linked.index)
    grid = np.sort(linked["wave"].dropna().unique())
    position = {w: float(i) for i, w in enumerate(grid)}
    return linked["wave"].map(position).astype(float)


def _lag(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``<c>_lag``: the value at the previous occasion of the same participant (NaN if missed).

    Exactly the previous scheduled occasion, not the previous completed one: after a missed
    occasion the "previous" answer is two periods old and would mean something else in a
    lagged model.
    """
    present = [c for c in columns if c in frame.columns]
    prev = (
        frame.dropna(subset=["occasion"])
        .sort_values("submitted_at")
        .drop_duplicates(["participant", "occasion"], keep="last")[
            ["participant", "occasion", *present]
        ]
    )
    prev = prev.assign(occasion=prev["occasion"] + 1).rename(
        columns={c: f"{c}_lag" for c in present}
    )
    return frame.merge(prev, on=["participant", "occasion"], how="left")


def _enrolment_dates(participants: pd.DataFrame, tz_changes: pd.DataFrame | None) -> pd.DataFrame:
    """``participant, enrolled_date``: the local calendar date of enrolment (naive midnight)."""
    people = participants[["participant", "enrolled_at"]].dropna().reset_index(drop=True)
    people["enrolled_at"] = pd.to_datetime(people["enrolled_at"], utc=True)
    dated = windows_before(people, participants, days=0, at="enrolled_at", tz_changes=tz_changes)
    return dated[["participant", "end"]].rename(columns={"end": "enrolled_date"})


def pre_enrollment_daily(
    messages: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    tz_changes: pd.DataFrame | None = None,
    session_gap_minutes: float = 30,
) -> pd.DataFrame:
    """Daily usage of the imported (pre-enrolment) history, same columns as the live daily frame.

    The feature code counts only live messages; the imported ones are run through it as if
    they were live so that ``<x>_pre`` means exactly what the window column ``x`` means.
    """
    if "imported" not in messages.columns:
        return daily_features(messages.iloc[0:0], participants, text=False)
    history = messages[messages["imported"].fillna(False).astype(bool)]
    return daily_features(
        history.assign(imported=False),
        participants,
        tz_changes=tz_changes,
        session_gap_minutes=session_gap_minutes,
        text=False,
    )


def _pre_columns(
    pre_daily: pd.DataFrame,
    enrolled: pd.DataFrame,
    predictors: Sequence[str],
    window_days: int,
) -> pd.DataFrame:
    """``participant, <x>_pre``: usage in the ``window_days`` local days before enrolment.

    Only for participants with imported history (someone who imported nothing has an unknown
    baseline, not a zero one); the window is the same length as the survey windows so the
    baseline is on the windows' scale.
    """
    people = enrolled.assign(
        start=enrolled["enrolled_date"] - pd.Timedelta(days=window_days),
        end=enrolled["enrolled_date"],
    )
    features = window_features(pre_daily, people[["participant", "start", "end"]])
    for column in COUNT_COLUMNS:
        if column in features.columns:
            features[column] = features[column].fillna(0)
    has_history = features["participant"].isin(set(pre_daily["participant"]))
    out = pd.DataFrame({"participant": features["participant"]})
    for column in predictors:
        if column in features.columns:
            out[f"{column}_pre"] = features[column].where(has_history)
    return out


def link_usage_to_outcomes(
    daily: pd.DataFrame,
    participants: pd.DataFrame,
    responses: pd.DataFrame,
    *,
    window_days: int = 7,
    tz_changes: pd.DataFrame | None = None,
    predictors: Sequence[str] | None = None,
    invitations: pd.DataFrame | None = None,
    pre_daily: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per participant × completed survey occasion, usage windowed before it.

    The window is the ``window_days`` whole local days before the local date of
    ``submitted_at`` (start inclusive, end exclusive, the survey's own day excluded — exactly
    :func:`analysis.features.windows_before`). A window starting before the local date of
    enrolment is missing: every usage column NaN, ``window_before_enrollment`` True.

    Columns: ``participant, arm, entry, occurrence, wave, submitted_at, start, end``, every
    score as ``<instrument>.<score>``, the window usage columns, ``window_before_enrollment``,
    ``weeks`` (weeks from enrolment to completion), ``occasion`` (index of the occasion in the
    schedule, see :func:`_occasion_index`), ``<x>_within`` / ``<x>_between`` for each predictor
    (over the rows with usage), ``<c>_lag`` for every score and predictor (previous occasion),
    and with ``pre_daily`` (:func:`pre_enrollment_daily`) ``<x>_pre`` per predictor. Sorted by
    participant, then submission time.
    """
    if "wave" not in responses.columns:
        responses = responses.assign(wave=assign_waves(responses, participants))
    for column in ("participant", "entry", "occurrence", "submitted_at", "instrument", "scores"):
        if column not in responses.columns:
            raise ValueError(f"responses frame is missing column {column!r}")
    scores = score_columns(responses)
    if len(responses) == 0:
        columns = ["participant", "arm", "entry", "occurrence", "wave", "submitted_at"]
        return pd.DataFrame(
            columns=[
                *columns,
                "start",
                "end",
                *scores,
                *WINDOW_COLUMNS,
                "window_before_enrollment",
                "weeks",
                "occasion",
            ]
        )

    occasions = _occasions(responses)
    occasions["submitted_at"] = pd.to_datetime(occasions["submitted_at"], utc=True)
    windows = windows_before(
        occasions, participants, days=window_days, at="submitted_at", tz_changes=tz_changes
    )
    linked = window_features(daily, windows)
    for column in COUNT_COLUMNS:
        if column in linked.columns:
            linked[column] = linked[column].fillna(0)

    # Usage before enrolment was not observed on the platform: such a window is missing, not
    # empty (a 0 there turned any baseline-to-follow-up change of the outcome into a "usage
    # effect"; issue 13, cause 1).
    enrolled = _enrolment_dates(participants, tz_changes)
    enrolled_date = linked["participant"].map(enrolled.set_index("participant")["enrolled_date"])
    before = (pd.to_datetime(linked["start"]) < enrolled_date).fillna(False).astype(bool)
    # Every column window_features added except the window's length is usage.
    usage_columns = [c for c in linked.columns if c not in windows.columns and c != "window_days"]
    linked.loc[before, usage_columns] = np.nan
    linked["window_before_enrollment"] = before.to_numpy()

    if "arm" in participants.columns:
        linked.insert(
            1, "arm", linked["participant"].map(participants.set_index("participant")["arm"])
        )
    start = pd.to_datetime(
        linked["participant"].map(participants.set_index("participant")["enrolled_at"]), utc=True
    )
    # Time from enrolment to the actual completion, not to the scheduled opening: a survey
    # answered four days late measures the outcome four days later.
    linked["weeks"] = (linked["submitted_at"] - start).dt.total_seconds() / SECONDS_PER_WEEK
    linked = linked.sort_values(["participant", "submitted_at"], kind="stable").reset_index(
        drop=True
    )
    linked["wave"] = pd.to_numeric(linked["wave"]).astype(float)
    linked["occasion"] = _occasion_index(linked, invitations)

    chosen = [p for p in (predictors or DEFAULT_PREDICTORS) if p in linked.columns]
    for column in chosen:
        # For exports and figures; every model recomputes these over its own complete rows.
        person_mean = linked.groupby("participant", sort=False)[column].transform("mean")
        linked[f"{column}_between"] = person_mean
        linked[f"{column}_within"] = linked[column] - person_mean
    linked = _lag(linked, [*scores, *chosen, "window_before_enrollment"])
    if pre_daily is not None:
        pre = _pre_columns(pre_daily, enrolled, chosen, window_days)
        linked = linked.merge(pre, on="participant", how="left")
    return linked


def attrition_summary(
    participants: pd.DataFrame,
    invitations: pd.DataFrame,
    *,
    daily: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Who stopped answering: participants by last completed wave, overall, by arm, by usage.

    ``invitations`` has ``participant, wave, status`` (status ``"completed"`` counts). The last
    completed wave is −1 for someone who never completed one. Usage tertiles (low/middle/high)
    rank participants by their total ``messages_sent`` in ``daily``; without ``daily`` only
    ``all`` and ``arm`` rows are returned. Columns: ``by``
    (``all``/``arm``/``usage_tertile``), ``group``, ``last_wave``, ``n``, ``share`` (of the
    group).
    """
    people = participants[["participant", *(["arm"] if "arm" in participants else [])]].copy()
    done = invitations[invitations["status"] == "completed"].dropna(subset=["wave"])
    last = done.groupby("participant")["wave"].max()
    people["last_wave"] = people["participant"].map(last).fillna(-1).astype(int)
    people["all"] = "all"
    groupings = ["all"]
    if "arm" in people:
        people["arm"] = people["arm"].fillna("none").astype(str)
        groupings.append("arm")
    if daily is not None and len(people) >= 3:  # three tertiles need three people
        totals = daily.groupby("participant")["messages_sent"].sum()
        usage = people["participant"].map(totals).fillna(0)
        # Ranking first keeps the tertiles of equal size when many people tie (e.g. at zero).
        people["usage_tertile"] = pd.qcut(
            usage.rank(method="first"), 3, labels=["low", "middle", "high"]
        ).astype(str)
        groupings.append("usage_tertile")
    parts = []
    for by in groupings:
        counts = people.groupby([by, "last_wave"]).size().rename("n").reset_index()
        counts["share"] = counts["n"] / counts.groupby(by)["n"].transform("sum")
        parts.append(counts.rename(columns={by: "group"}).assign(by=by))
    out = pd.concat(parts, ignore_index=True)[["by", "group", "last_wave", "n", "share"]]
    return out.sort_values(["by", "group", "last_wave"], kind="stable").reset_index(drop=True)
