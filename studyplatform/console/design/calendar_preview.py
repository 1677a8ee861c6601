"""The designer's calendar preview: each time-based survey occurrence for a sample participant."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from surveys.schedule_rules import (
    EVENT_RULES,
    ParticipantContext,
    ScheduleError,
    all_occurrences,
)


@dataclass(frozen=True)
class CalendarRow:
    entry: str
    wave: int | None
    opens: datetime  # local
    closes: datetime  # local
    instruments: tuple[str, ...]
    study_day: int


def calendar_rows(
    doc: Mapping, *, enrolled_on: date, tz: str
) -> tuple[list[CalendarRow], list[str]]:
    """Every time-based occurrence for a participant enrolled at noon local on `enrolled_on`.

    Returns (rows sorted by opening time, keys of event-triggered entries that have no fixed
    dates). The seed is fixed so random EMA prompts are the same on every reload.
    """
    zone = ZoneInfo(tz)
    enrolled_at = datetime.combine(enrolled_on, time(12, 0), tzinfo=zone)
    ctx = ParticipantContext.for_study(
        enrolled_at=enrolled_at,
        timezone=tz,
        duration_days=int(doc.get("study", {}).get("duration_days", 1)),
        seed="preview",
    )
    rows: list[CalendarRow] = []
    event_entries: list[str] = []
    for entry in doc.get("surveys", {}).get("schedule", []):
        if entry.get("rule", {}).get("type") in EVENT_RULES:
            event_entries.append(entry["key"])
            continue
        try:
            occurrences = all_occurrences(entry, ctx)
        except ScheduleError:
            continue  # the validator reports the entry itself
        for occ in occurrences:
            opens = occ.opens_at.astimezone(zone)
            rows.append(
                CalendarRow(
                    entry=entry["key"],
                    wave=occ.wave,
                    opens=opens,
                    closes=occ.closes_at.astimezone(zone),
                    instruments=tuple(entry.get("instruments", [])),
                    study_day=(opens.date() - enrolled_on).days,
                )
            )
    rows.sort(key=lambda r: (r.opens, r.entry))
    return rows, event_entries
