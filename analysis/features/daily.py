"""Daily features: usage and text markers per participant per local day, in one pass.

:func:`daily_features` prepares the messages once (local times, day groups) and adds the text
markers of the participant's own non-imported messages to the usage columns, so the linking
step gets one frame to window. No Django imports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.features.lexicons import LANGUAGES, language_key
from analysis.features.text_markers import MARKER_COLUMNS, count_markers, to_arrow_text
from analysis.features.usage import (
    DAILY_USAGE_COLUMNS,
    Prepared,
    _ratio,
    daily_from_prepared,
    prepare,
)

__all__ = [
    "DAILY_COLUMNS",
    "TEXT_COLUMNS",
    "daily_features",
    "daily_text_markers",
    "text_marker_columns",
]

TEXT_COLUMNS: tuple[str, ...] = (
    "text_messages",
    *MARKER_COLUMNS,
    "relationship_messages",
    "first_person_rate",
    "positive_affect_rate",
    "negative_affect_rate",
    "relationship_message_share",
)
DAILY_COLUMNS: tuple[str, ...] = (*DAILY_USAGE_COLUMNS, *TEXT_COLUMNS)


def text_marker_columns(prep: Prepared) -> dict[str, np.ndarray]:
    """``TEXT_COLUMNS`` for the day groups of already prepared messages."""
    G = prep.n_groups
    messages = prep.messages
    rows = np.flatnonzero((prep.gid >= 0) & prep.user)
    if "text" in messages.columns and rows.size:
        text = to_arrow_text(messages["text"]).take(rows)
        has_text = text.is_valid().to_numpy(zero_copy_only=False)
        rows, text = rows[has_text], text.filter(has_text)
    else:
        rows = rows[:0]
        text = None
    langs = prep.participants.get("language")
    if langs is None:
        raise ValueError("participants frame needs a language column for text markers")
    p_lang = np.array([LANGUAGES.index(language_key(x)) for x in langs.astype(object)], np.int8)
    counts = (
        count_markers(text, p_lang[prep.pidx[rows]])
        if text is not None and rows.size
        else np.zeros((len(MARKER_COLUMNS), 0), dtype=np.int64)
    )
    g = prep.gid[rows]
    cols = {"text_messages": np.bincount(g, minlength=G)}
    for i, name in enumerate(MARKER_COLUMNS):
        cols[name] = np.bincount(g, weights=counts[i], minlength=G).astype(np.int64)
    cols["relationship_messages"] = np.bincount(g[counts[4] > 0], minlength=G)
    cols["first_person_rate"] = _ratio(cols["first_person"], cols["tokens"])
    cols["positive_affect_rate"] = _ratio(cols["affect_positive"], cols["tokens"])
    cols["negative_affect_rate"] = _ratio(cols["affect_negative"], cols["tokens"])
    cols["relationship_message_share"] = _ratio(
        cols["relationship_messages"], cols["text_messages"]
    )
    return cols


def daily_text_markers(
    messages: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    tz_changes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Text markers per participant per local day (``participant, date`` + ``TEXT_COLUMNS``).

    Only the participant's own (role user), non-imported messages with text count; rates are
    per token (``first_person_rate`` ...) or per message with text
    (``relationship_message_share``), NaN when the denominator is zero. Rows are the same
    (participant, date) rows as :func:`analysis.features.usage.daily_usage`.
    """
    prep = prepare(messages, participants, tz_changes)
    frame = pd.DataFrame(
        {
            "participant": prep.participants["participant"].to_numpy()[prep.group_pidx],
            "date": (prep.group_day * 86_400_000_000_000).view("M8[ns]"),
        }
    )
    for name, values in text_marker_columns(prep).items():
        frame[name] = values
    return frame


def daily_features(
    messages: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    tz_changes: pd.DataFrame | None = None,
    session_gap_minutes: float = 30,
    min_session_minutes: float = 1.0,
    text: bool = True,
) -> pd.DataFrame:
    """Usage columns (``DAILY_USAGE_COLUMNS``) and, with ``text``, ``TEXT_COLUMNS`` per day."""
    prep = prepare(messages, participants, tz_changes)
    daily = daily_from_prepared(
        prep, session_gap_minutes=session_gap_minutes, min_session_minutes=min_session_minutes
    )
    if text:
        for name, values in text_marker_columns(prep).items():
            daily[name] = values
    return daily
