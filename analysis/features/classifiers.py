"""Conversation-classifier rates as usage features: ``cls_<key>_rate`` per survey window.

Pure pandas/numpy (no Django). The Django side (``analysis.data``) turns stored classifier labels
into a ``labels`` frame: one row per labelled unit with ``participant``, ``at`` (UTC instant of
the labelled message), ``feature`` (``cls_<key>``, or ``cls_<key>_<level>`` for each level of a
categorical classifier) and ``hit`` (the unit has the feature). :func:`classifier_daily_counts`
counts them per participant and local calendar day (the same local dates as the other daily
features), :func:`add_classifier_days` puts the counts on the daily frame, and
:func:`analysis.features.window_features` sums ``<feature>_hits`` and ``<feature>_n`` over each
window and divides, exactly as it recomputes other ratios from sums. A window without labelled
units has no rate (NaN, missing), never 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.features.usage import _dates, _day, _participant_index, _utc_ns, local_times

HITS = "_hits"
COUNT = "_n"
RATE = "_rate"
PREFIX = "cls_"


def classifier_daily_counts(
    labels: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    tz_changes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``participant, date, <feature>_hits, <feature>_n`` per participant and local day."""
    missing = [c for c in ("participant", "at", "feature", "hit") if c not in labels.columns]
    if missing:
        raise ValueError(f"labels frame is missing columns {missing}")
    if len(labels) == 0:
        return pd.DataFrame(columns=["participant", "date"])
    known = labels[labels["participant"].isin(set(participants["participant"]))]
    pidx = _participant_index(known["participant"], participants, "labels")
    local = local_times(pidx, _utc_ns(known["at"], "labels.at"), participants, tz_changes)
    frame = pd.DataFrame(
        {
            "participant": known["participant"].to_numpy(),
            "date": _dates(_day(local)),
            "feature": known["feature"].to_numpy(),
            "hit": known["hit"].astype(bool).to_numpy(),
        }
    )
    grouped = frame.groupby(["participant", "date", "feature"], sort=True)["hit"].agg(
        hits="sum", n="size"
    )
    wide = grouped.unstack("feature", fill_value=0)
    wide.columns = [
        f"{feature}{HITS if part == 'hits' else COUNT}" for part, feature in wide.columns
    ]
    return wide.reset_index()


def add_classifier_days(daily: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """The daily frame with the classifier counts of its (participant, date) rows; 0 where a
    day has no labels. A labelled unit's day is a day with messages, so it has a daily row."""
    extra = [c for c in counts.columns if c not in ("participant", "date")]
    if not extra:
        return daily
    out = daily.merge(counts, on=["participant", "date"], how="left")
    for column in extra:
        out[column] = out[column].fillna(0).astype(np.int64)
    return out


def classifier_features(columns) -> list[str]:
    """The ``cls_...`` features a daily frame has counts for (from its ``<feature>_n``)."""
    return sorted(c[: -len(COUNT)] for c in columns if c.startswith(PREFIX) and c.endswith(COUNT))
