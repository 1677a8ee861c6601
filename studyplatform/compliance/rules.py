"""Usage requirements as plain data: periods, what meets one, and the completion rule.

Pure Python (no Django): a protocol's ``requirements`` section becomes a :class:`Requirement`,
and :func:`progress` turns a participant's per-day usage (active minutes and messages per local
date, computed with the usage features' own definitions in ``analysis.features.usage``) into
what the home page, the console and the nudges need.

Periods: study day 0 is the participant's local enrollment date (as in ``study_day`` of the
usage features and in the survey schedule). A daily requirement has one period per study day;
a weekly one a period per 7 study days (week 0 = days 0-6). A period is *met* when its summed
active minutes and messages reach every minimum the protocol sets.

Completion rule (``min_days`` of ``of_days``, or ``min_weeks`` of ``of_weeks``): only the first
``of_*`` periods count. The completion step is offered once at least ``min_*`` of them are met
*and* the last counted period has begun: a participant who has met the rule early is not sent
back to the recruitment panel before the last counted day, when the closing questionnaires of
most designs open. See docs/protocol.md, "Usage requirements".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any

DEFAULT_CHANNELS = ("in_app", "email")


@dataclass(frozen=True)
class Requirement:
    """One study's usage requirement."""

    period_days: int  # 1 (daily) or 7 (weekly)
    active_minutes: float | None
    messages: int | None
    min_periods: int | None = None  # completion rule; None when the protocol has none
    of_periods: int | None = None
    nudge_time: time | None = None
    nudge_channels: tuple[str, ...] = ()
    nudge_text: Any = None  # a string or {language: string}; None: the platform's own text

    @property
    def weekly(self) -> bool:
        return self.period_days == 7

    @property
    def has_completion(self) -> bool:
        return self.min_periods is not None and self.of_periods is not None

    def met(self, active_minutes: float, messages: int) -> bool:
        """Whether a period with this much use meets every minimum set."""
        if self.active_minutes is not None and active_minutes < self.active_minutes:
            return False
        return not (self.messages is not None and messages < self.messages)

    def counted_periods(self, duration_days: int) -> int:
        """How many periods matter: the completion rule's, else the whole ones in the study."""
        if self.of_periods is not None:
            return self.of_periods
        return max(1, duration_days // self.period_days)


def requirement_from_protocol(protocol: Mapping[str, Any] | None) -> Requirement | None:
    """The protocol's requirement, or None when it sets none (a validated protocol)."""
    section = (protocol or {}).get("requirements")
    if not isinstance(section, Mapping):
        return None
    weekly = "weekly" in section
    minimum = section.get("weekly" if weekly else "daily")
    if not isinstance(minimum, Mapping):
        return None
    completion = section.get("completion") or {}
    unit = "weeks" if weekly else "days"
    nudge = section.get("nudge")
    nudge_time = None
    if isinstance(nudge, Mapping) and nudge.get("local_time"):
        hours, minutes = str(nudge["local_time"]).split(":")
        nudge_time = time(int(hours), int(minutes))
    return Requirement(
        period_days=7 if weekly else 1,
        active_minutes=(float(minimum["active_minutes"]) if "active_minutes" in minimum else None),
        messages=int(minimum["messages"]) if "messages" in minimum else None,
        min_periods=completion.get(f"min_{unit}"),
        of_periods=completion.get(f"of_{unit}"),
        nudge_time=nudge_time,
        nudge_channels=tuple(nudge.get("channels") or DEFAULT_CHANNELS) if nudge_time else (),
        nudge_text=nudge.get("text") if isinstance(nudge, Mapping) else None,
    )


@dataclass(frozen=True)
class Period:
    """One day (or week) of the requirement for one participant."""

    index: int
    first: date  # local dates, inclusive
    last: date
    active_minutes: float
    messages: int
    met: bool
    closed: bool  # the period's last day has ended
    counted: bool  # within the completion rule's periods

    @property
    def missed(self) -> bool:
        return self.closed and not self.met


@dataclass(frozen=True)
class Progress:
    """Where a participant stands against the requirement on local date ``today``."""

    requirement: Requirement
    today: date
    periods: tuple[Period, ...]  # from period 0 up to the current one (or the last counted)
    current: Period | None  # the period ``today`` falls in, if within the counted ones
    met_count: int  # counted periods met so far
    counted: int
    needed: int | None  # the completion rule's minimum
    completion_offered: bool
    completion_possible: bool  # enough counted periods are left to meet the rule

    @property
    def still_needed(self) -> int:
        return max(0, (self.needed or 0) - self.met_count)

    @property
    def completion_opens(self) -> int:
        """Study day number (1-based, as the home page counts) from which the step is offered."""
        return (self.counted - 1) * self.requirement.period_days + 1


def period_bounds(req: Requirement, day0: date, index: int) -> tuple[date, date]:
    first = day0 + timedelta(days=index * req.period_days)
    return first, first + timedelta(days=req.period_days - 1)


def period_index(req: Requirement, day0: date, day: date) -> int:
    return (day - day0).days // req.period_days


def progress(
    req: Requirement,
    *,
    day0: date,
    today: date,
    duration_days: int,
    usage: Mapping[date, tuple[float, int]],
) -> Progress:
    """The participant's progress on ``today`` from ``usage`` (local date -> (active minutes,
    messages); missing dates had no use). ``day0`` is the local enrollment date."""
    counted = req.counted_periods(duration_days)
    today_index = period_index(req, day0, today)
    last_index = min(today_index, counted - 1)
    periods = []
    for index in range(0, last_index + 1):
        first, last = period_bounds(req, day0, index)
        minutes = 0.0
        messages = 0
        day = first
        while day <= last:
            m, n = usage.get(day, (0.0, 0))
            minutes += m
            messages += n
            day += timedelta(days=1)
        periods.append(
            Period(
                index=index,
                first=first,
                last=last,
                active_minutes=minutes,
                messages=messages,
                met=req.met(minutes, messages),
                closed=last < today,
                counted=index < counted,
            )
        )
    met_count = sum(1 for p in periods if p.met and p.counted)
    current = periods[-1] if periods and 0 <= today_index < counted else None
    # Counted periods that can still be met: not yet closed, and not already met.
    open_unmet = counted - sum(1 for p in periods if p.closed or p.met)
    possible = req.min_periods is None or met_count + max(0, open_unmet) >= req.min_periods
    offered = req.has_completion and today_index >= counted - 1 and met_count >= req.min_periods
    return Progress(
        requirement=req,
        today=today,
        periods=tuple(periods),
        current=current,
        met_count=met_count,
        counted=counted,
        needed=req.min_periods,
        completion_offered=bool(offered),
        completion_possible=possible,
    )
