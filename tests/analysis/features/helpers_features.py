"""Builders for hand-made message timelines used by the feature tests."""

from __future__ import annotations

import pandas as pd

MESSAGE_COLUMNS = [
    "participant",
    "conversation",
    "role",
    "created_at",
    "text",
    "latency_ms",
    "imported",
]


def messages(rows: list[tuple], *, words: list | None = None) -> pd.DataFrame:
    """rows: (participant, conversation, role, created_at UTC "YYYY-MM-DD HH:MM[:SS]", text,
    latency_ms, imported) with the last three optional."""
    full = []
    for row in rows:
        p, c, role, at, *rest = row
        text = rest[0] if len(rest) > 0 else "hello"
        latency = rest[1] if len(rest) > 1 else float("nan")
        imported = rest[2] if len(rest) > 2 else False
        full.append((p, c, role, pd.Timestamp(at, tz="UTC"), text, latency, imported))
    frame = pd.DataFrame(full, columns=MESSAGE_COLUMNS)
    frame["created_at"] = frame["created_at"].astype("datetime64[ns, UTC]")
    frame["latency_ms"] = frame["latency_ms"].astype(float)
    frame["imported"] = frame["imported"].astype(bool)
    if words is not None:
        frame["words"] = words
    return frame


def empty_messages() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in MESSAGE_COLUMNS})
    frame["created_at"] = pd.Series(dtype="datetime64[us, UTC]")
    frame["latency_ms"] = pd.Series(dtype=float)
    frame["imported"] = pd.Series(dtype=bool)
    return frame


def participants(*rows: tuple) -> pd.DataFrame:
    """rows: (participant, timezone[, language[, enrolled_at UTC]])."""
    out = []
    for row in rows:
        p, tz, *rest = row
        lang = rest[0] if rest else "en"
        enrolled = pd.Timestamp(rest[1], tz="UTC") if len(rest) > 1 else pd.NaT
        out.append((p, tz, enrolled, None, lang))
    frame = pd.DataFrame(out, columns=["participant", "timezone", "enrolled_at", "arm", "language"])
    frame["enrolled_at"] = pd.to_datetime(frame["enrolled_at"], utc=True)
    return frame


def day(frame: pd.DataFrame, participant: str, date: str) -> pd.Series:
    """The single daily row of ``participant`` on local ``date``."""
    rows = frame[(frame["participant"] == participant) & (frame["date"] == pd.Timestamp(date))]
    assert len(rows) == 1, f"expected one row for {participant} {date}, got {len(rows)}"
    return rows.iloc[0]
