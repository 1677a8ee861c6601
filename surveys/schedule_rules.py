"""Schedule arithmetic: protocol schedule entries -> concrete survey invitation occurrences.

Pure functions (no Django): give a ``surveys.schedule`` entry from the protocol (a plain dict, as
validated by ``protocol.schema.json``) and a :class:`ParticipantContext`, get
:class:`Occurrence` values with UTC ``opens_at`` / ``closes_at`` / ``reminder_times`` and a stable
``occurrence_key`` that the engine stores under a unique constraint
``(participant, entry, occurrence_key)``.

Time-based rules (``enrollment``, ``recurring``, ``weekdays``, ``fixed_dates``, ``random_ema``,
``exit``) are expanded by :func:`occurrences_between` (cheap: it only looks at the local dates
that can fall in the asked range, so a beat tick every minute costs O(occurrences in range)) and
:func:`all_occurrences` (calendar previews). Every occurrence is a function of its local date
alone, never of the range asked, so overlapping ranges return identical occurrences.

Event rules (``after_chat_session``, ``after_messages``, ``no_chat``) are computed per event by
:func:`occurrence_after_session`, :func:`occurrence_after_messages` and
:func:`occurrence_no_chat`.

Wall-clock policy (docs/schedule_rules.md has the full text): "HH:MM" is local wall-clock time in
the zone the participant is in on that date, so 09:00 stays 09:00 across DST. A nonexistent
local time (spring-forward gap) moves forward to the first instant after the gap; an ambiguous
one (fall-back) takes the first of the two instants (fold=0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_EXIT_AT",
    "DEFAULT_WINDOW_HOURS",
    "EVENT_RULES",
    "TIME_BASED_RULES",
    "Occurrence",
    "ParticipantContext",
    "ScheduleError",
    "all_occurrences",
    "local_date_of",
    "local_day_bounds",
    "local_to_utc",
    "occurrence_after_messages",
    "occurrence_after_session",
    "occurrence_no_chat",
    "occurrences_between",
    "study_end_for",
]

DEFAULT_WINDOW_HOURS = 24.0
DEFAULT_EXIT_AT = "18:00"
TIME_BASED_RULES = frozenset(
    {"enrollment", "recurring", "weekdays", "fixed_dates", "random_ema", "exit"}
)
EVENT_RULES = frozenset({"after_chat_session", "after_messages", "no_chat"})
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()

# Local dates sit within ±14 h of the UTC date and a DST gap pushes a time forward by at most a
# day (Samoa skipped a whole day in 2011), so two days either side covers every candidate.
_DATE_MARGIN = timedelta(days=2)
_MIDNIGHT = time(0, 0)


class ScheduleError(ValueError):
    """A schedule entry or participant context that cannot be turned into occurrences."""


@dataclass(frozen=True)
class ParticipantContext:
    """What the schedule needs to know about one participant.

    ``timezone`` is the zone at enrollment; ``timezone_changes`` lists later moves as
    ``(effective_from_utc, zone)`` in chronological order. ``study_end`` is the exclusive end of
    the study in UTC; build it with :func:`study_end_for` (or :meth:`for_study`).
    """

    enrolled_at: datetime
    timezone: str
    study_end: datetime
    seed: str
    withdrawn_at: datetime | None = None
    timezone_changes: tuple[tuple[datetime, str], ...] = ()
    _periods: tuple[tuple[datetime | None, ZoneInfo], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in ("enrolled_at", "study_end", "withdrawn_at"):
            value = getattr(self, name)
            _require_aware(value, name)
            if value is not None:  # UTC everywhere, so occurrences come out in UTC
                object.__setattr__(self, name, value.astimezone(UTC))
        object.__setattr__(self, "timezone_changes", tuple(map(tuple, self.timezone_changes)))
        periods: list[tuple[datetime | None, ZoneInfo]] = [(None, _zone(self.timezone))]
        previous = self.enrolled_at
        for effective_from, name in self.timezone_changes:
            _require_aware(effective_from, "timezone_changes")
            if effective_from < previous:
                raise ScheduleError("timezone_changes must be in chronological order")
            periods.append((effective_from.astimezone(UTC), _zone(name)))
            previous = effective_from
        object.__setattr__(self, "_periods", tuple(periods))

    @classmethod
    def for_study(
        cls,
        *,
        enrolled_at: datetime,
        timezone: str,
        duration_days: int,
        seed: str,
        withdrawn_at: datetime | None = None,
        timezone_changes: Sequence[tuple[datetime, str]] = (),
    ) -> ParticipantContext:
        changes = tuple(timezone_changes)
        return cls(
            enrolled_at=enrolled_at,
            timezone=timezone,
            study_end=study_end_for(enrolled_at, timezone, duration_days, changes),
            seed=seed,
            withdrawn_at=withdrawn_at,
            timezone_changes=changes,
        )


@dataclass(frozen=True)
class Occurrence:
    """One concrete invitation of a schedule entry; all instants are aware UTC datetimes."""

    entry_key: str
    occurrence_key: str
    wave: int | None
    opens_at: datetime
    closes_at: datetime
    reminder_times: tuple[datetime, ...]


# --- time zones -----------------------------------------------------------------------------


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ScheduleError(f"{name} must be a timezone-aware datetime")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {name!r}") from exc


def _wall_to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time in one zone (gap -> first instant after it)."""
    local = datetime.combine(day, at, tzinfo=tz)  # fold=0: the first of an ambiguous pair
    utc = local.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == local.replace(tzinfo=None):
        return utc
    # Nonexistent time. Read with the offset after the transition (fold=1) it lands before the
    # transition, with the offset before it (fold=0) at or after; bisect on whole seconds for
    # the transition instant, i.e. the first instant that exists after the gap.
    after_offset = utc.astimezone(tz).utcoffset()
    lo, hi = local.replace(fold=1).astimezone(UTC), utc
    while hi - lo > timedelta(seconds=1):
        mid = lo + timedelta(seconds=(hi - lo) // timedelta(seconds=1) // 2)
        if mid.astimezone(tz).utcoffset() == after_offset:
            hi = mid
        else:
            lo = mid
    return hi


def _zone_at(ctx: ParticipantContext, instant: datetime) -> ZoneInfo:
    tz = ctx._periods[0][1]
    for start, zone in ctx._periods[1:]:
        if start is not None and instant >= start:
            tz = zone
    return tz


def local_date_of(ctx: ParticipantContext, instant: datetime) -> date:
    """The participant's local calendar date at ``instant``."""
    return instant.astimezone(_zone_at(ctx, instant)).date()


def local_to_utc(ctx: ParticipantContext, day: date, at: time) -> datetime:
    """The UTC instant of local wall-clock ``at`` on local ``day`` for this participant.

    The zone is the one in effect at the resulting instant. When the time is valid in more than
    one zone period (moving west repeats hours) the earliest wins, so recording a move never
    changes occurrences before it. When it is valid in none (moving east skips hours) it opens
    at the move itself, mirroring the DST-gap policy.
    """
    periods = ctx._periods
    candidates = []
    for i, (start, tz) in enumerate(periods):
        end = periods[i + 1][0] if i + 1 < len(periods) else None
        instant = _wall_to_utc(day, at, tz)
        if (start is None or instant >= start) and (end is None or instant < end):
            return instant  # periods are chronological, so the first valid one is the earliest
        candidates.append(instant)
    for j in range(len(periods) - 1, 0, -1):
        move = periods[j][0]
        if move is not None and candidates[j - 1] >= move:
            return move
    return candidates[-1]  # unreachable with chronological periods; kept total for safety


def local_day_bounds(ctx: ParticipantContext, instant: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC of the participant's local day containing ``instant``.

    For counting earlier ``after_chat_session`` occurrences against ``max_per_day``.
    """
    day = local_date_of(ctx, instant)
    return local_to_utc(ctx, day, _MIDNIGHT), local_to_utc(ctx, day + timedelta(days=1), _MIDNIGHT)


def study_end_for(
    enrolled_at: datetime,
    timezone: str,
    duration_days: int,
    timezone_changes: Sequence[tuple[datetime, str]] = (),
) -> datetime:
    """Exclusive study end: local midnight starting local date ``enrolled + duration_days``.

    The enrollment date is study day 0, so the last study day is day ``duration_days - 1``.
    """
    if duration_days < 1:
        raise ScheduleError("duration_days must be at least 1")
    probe = ParticipantContext(
        enrolled_at=enrolled_at,
        timezone=timezone,
        study_end=enrolled_at,
        seed="",
        timezone_changes=tuple(timezone_changes),
    )
    day0 = local_date_of(probe, enrolled_at)
    return local_to_utc(probe, day0 + timedelta(days=duration_days), _MIDNIGHT)


# --- entry parsing --------------------------------------------------------------------------


def _hhmm(value: object, where: str) -> time:
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except ValueError as exc:
        raise ScheduleError(f"{where} must be a local time HH:MM, not {value!r}") from exc


def _rule(entry: Mapping) -> dict:
    rule = entry.get("rule")
    if not isinstance(entry.get("key"), str):
        raise ScheduleError("schedule entry has no key")
    if not isinstance(rule, Mapping) or rule.get("type") not in TIME_BASED_RULES | EVENT_RULES:
        raise ScheduleError(f"schedule entry {entry.get('key')!r} has no known rule type")
    return dict(rule)


def _weekday_set(values: Sequence[str], where: str) -> frozenset[int]:
    try:
        return frozenset(WEEKDAYS.index(v) for v in values)
    except ValueError as exc:
        raise ScheduleError(f"{where} must list days as mon..sun") from exc


def _make(entry: Mapping, ctx: ParticipantContext, key: str, wave: int | None, opens: datetime):
    window = timedelta(hours=float(entry.get("window_hours", DEFAULT_WINDOW_HOURS)))
    closes = opens + window
    reminders = entry.get("reminders") or {}
    offsets = sorted({float(h) for h in reminders.get("offsets_hours", [])})
    times = [opens + timedelta(hours=h) for h in offsets]
    # Sorted, so "before closing" keeps a prefix and capping by max keeps the earliest ones.
    times = [t for t in times if t < closes][: reminders.get("max", len(times))]
    if ctx.withdrawn_at is not None:
        times = [t for t in times if t < ctx.withdrawn_at]
    return Occurrence(entry["key"], key, wave, opens, closes, tuple(times))


def _allowed(ctx: ParticipantContext, opens: datetime, *, after_enrollment: bool) -> bool:
    if opens < ctx.enrolled_at or (after_enrollment and opens == ctx.enrolled_at):
        return False
    if opens >= ctx.study_end:
        return False
    return ctx.withdrawn_at is None or opens < ctx.withdrawn_at


# --- time-based rules -----------------------------------------------------------------------


def occurrences_between(
    entry: Mapping, ctx: ParticipantContext, start: datetime, end: datetime
) -> list[Occurrence]:
    """Occurrences of a time-based entry whose ``opens_at`` is in ``[start, end)``.

    Sorted by ``opens_at`` then key. Event rules yield ``[]`` here (see the ``occurrence_*``
    functions). Only the local dates that can fall in the range are examined.
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    rule = _rule(entry)
    if rule["type"] in EVENT_RULES:
        return []
    # Clamp first: nothing opens before enrollment or at/after study end or withdrawal, and a
    # huge range (a preview from datetime.min) must not make the date loop long.
    start = max(start.astimezone(UTC), ctx.enrolled_at)
    end = min(end.astimezone(UTC), ctx.study_end)
    if ctx.withdrawn_at is not None:
        end = min(end, ctx.withdrawn_at)
    if start >= end:
        return []
    first_day = (start - _DATE_MARGIN).date()
    last_day = (end + _DATE_MARGIN).date()
    found = [
        occ
        for occ in _EXPANDERS[rule["type"]](entry, rule, ctx, first_day, last_day)
        if start <= occ.opens_at < end
    ]
    return sorted(found, key=lambda o: (o.opens_at, o.occurrence_key))


def all_occurrences(entry: Mapping, ctx: ParticipantContext) -> list[Occurrence]:
    """Every occurrence of a time-based entry for this participant (calendar previews)."""
    return occurrences_between(entry, ctx, ctx.enrolled_at, ctx.study_end)


def _study_days(ctx: ParticipantContext) -> tuple[date, date]:
    """Local enrollment date (day 0) and the last study day."""
    return (
        local_date_of(ctx, ctx.enrolled_at),
        local_date_of(ctx, ctx.study_end - timedelta(microseconds=1)),
    )


def _dates(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _enrollment(entry, rule, ctx, first, last) -> Iterator[Occurrence]:
    opens = ctx.enrolled_at + timedelta(minutes=rule.get("delay_minutes", 0))
    if _allowed(ctx, opens, after_enrollment=False):
        yield _make(entry, ctx, "enrollment", None, opens)


def _exit(entry, rule, ctx, first, last) -> Iterator[Occurrence]:
    at = _hhmm(rule.get("at", DEFAULT_EXIT_AT), "exit.at")
    _, last_study_day = _study_days(ctx)
    # Every participant gets an exit survey: if they enrolled on the last day after `at`, it
    # opens at enrollment instead of being dropped.
    opens = max(local_to_utc(ctx, last_study_day, at), ctx.enrolled_at)
    if _allowed(ctx, opens, after_enrollment=False):
        yield _make(entry, ctx, "exit", None, opens)


def _recurring(entry, rule, ctx, first, last) -> Iterator[Occurrence]:
    at = _hhmm(rule["at"], "recurring.at")
    every = int(rule["every_days"])
    if every < 1:
        raise ScheduleError("recurring.every_days must be at least 1")
    day0, last_study_day = _study_days(ctx)
    start_day = int(rule.get("start_day", every))
    end_day = int(rule.get("end_day", (last_study_day - day0).days))
    for day in _dates(max(first, day0), min(last, last_study_day)):
        k = (day - day0).days
        if k < start_day or k > end_day or (k - start_day) % every:
            continue
        opens = local_to_utc(ctx, day, at)
        if _allowed(ctx, opens, after_enrollment=True):
            yield _make(entry, ctx, f"d{k}", (k - start_day) // every + 1, opens)


def _count_weekdays(first: date, last: date, weekdays: frozenset[int]) -> int:
    """How many dates in ``[first, last]`` fall on one of ``weekdays`` (O(1))."""
    if last < first:
        return 0
    weeks, rest = divmod((last - first).days + 1, 7)
    return weeks * len(weekdays) + sum(
        (first + timedelta(days=i)).weekday() in weekdays for i in range(rest)
    )


def _weekdays(entry, rule, ctx, first, last) -> Iterator[Occurrence]:
    at = _hhmm(rule["at"], "weekdays.at")
    weekdays = _weekday_set(rule["days"], "weekdays.days")
    day0, last_study_day = _study_days(ctx)
    # The wave is the position in the participant's series; day 0 counts only when its time is
    # still ahead at enrollment (otherwise it never occurs).
    day0_counts = day0.weekday() in weekdays and local_to_utc(ctx, day0, at) > ctx.enrolled_at
    for day in _dates(max(first, day0), min(last, last_study_day)):
        if day.weekday() not in weekdays:
            continue
        opens = local_to_utc(ctx, day, at)
        if _allowed(ctx, opens, after_enrollment=True):
            wave = _count_weekdays(day0 + timedelta(days=1), day, weekdays) + day0_counts
            yield _make(entry, ctx, day.isoformat(), wave, opens)


def _fixed_dates(entry, rule, ctx, first, last) -> Iterator[Occurrence]:
    at = _hhmm(rule["at"], "fixed_dates.at")
    try:
        days = sorted({date.fromisoformat(d) for d in rule["dates"]})
    except ValueError as exc:
        raise ScheduleError(f"fixed_dates.dates has a bad date: {exc}") from exc
    for wave, day in enumerate(days, start=1):
        if first <= day <= last:
            opens = local_to_utc(ctx, day, at)
            if _allowed(ctx, opens, after_enrollment=True):
                yield _make(entry, ctx, day.isoformat(), wave, opens)


class _HashDraws:
    """Uniform integers from SHA-256 in counter mode.

    Not ``random.Random``: the stored invitations must be reproducible from the seed forever,
    and this way no Python upgrade can change which times a participant gets.
    """

    def __init__(self, material: str) -> None:
        self._material = material.encode()
        self._counter = 0

    def below(self, n: int) -> int:
        limit = (1 << 64) - (1 << 64) % n  # rejection keeps every value equally likely
        while True:
            block = hashlib.sha256(self._material + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            value = int.from_bytes(block[:8], "big")
            if value < limit:
                return value % n


def _ema_offsets(material: str, per_day: int, window_s: int, gap_s: int) -> list[int]:
    """``per_day`` sorted second offsets in ``[0, window_s]``, consecutive ones ``gap_s`` apart.

    Spacing transformation: a uniform non-decreasing k-tuple x in ``[0, M]`` with
    ``M = window_s - (k-1)*gap_s`` maps one-to-one onto valid sets by ``t_i = x_i + i*gap_s``.
    The non-decreasing tuple is drawn exactly as a uniform k-subset c of ``range(M + k)`` with
    ``x_i = c_i - i`` (Floyd's algorithm), so every valid set of times is equally likely.
    """
    spare = window_s - (per_day - 1) * gap_s
    if spare < 0:
        raise ScheduleError(
            f"{per_day} prompts {gap_s // 60} minutes apart do not fit in the random_ema window"
        )
    draws = _HashDraws(material)
    n = spare + per_day
    chosen: set[int] = set()
    for j in range(n - per_day, n):
        t = draws.below(j + 1)
        chosen.add(j if t in chosen else t)
    return [c - i + i * gap_s for i, c in enumerate(sorted(chosen))]


def _random_ema(entry, rule, ctx, first, last) -> Iterator[Occurrence]:
    per_day = int(rule["per_day"])
    window_start, window_end = (_hhmm(t, "random_ema.between") for t in rule["between"])
    window_s = (
        datetime.combine(date.min, window_end) - datetime.combine(date.min, window_start)
    ) // timedelta(seconds=1)
    if window_s <= 0:
        raise ScheduleError("random_ema.between must end after it starts (same local day)")
    # Whole seconds, at least one apart, so two prompts of a day never coincide even with
    # min_gap_minutes 0; the gap is measured in local wall-clock time.
    gap_s = max(60 * int(rule.get("min_gap_minutes", 0)), 1)
    weekdays = _weekday_set(rule.get("days", WEEKDAYS), "random_ema.days")
    day0, last_study_day = _study_days(ctx)
    # Enrolling before the window opens keeps the enrollment day; later, EMA starts tomorrow
    # (a partial day would give fewer or squeezed prompts).
    before_window = ctx.enrolled_at < local_to_utc(ctx, day0, window_start)
    first_ema = day0 if before_window else day0 + timedelta(days=1)
    base = datetime.combine(date.min, window_start)
    for day in _dates(max(first, first_ema), min(last, last_study_day)):
        if day.weekday() not in weekdays:
            continue
        material = f"{ctx.seed}|{entry['key']}|{day.isoformat()}"
        for i, offset in enumerate(_ema_offsets(material, per_day, window_s, gap_s), start=1):
            at = (base + timedelta(seconds=offset)).time()
            opens = local_to_utc(ctx, day, at)
            if _allowed(ctx, opens, after_enrollment=True):
                yield _make(entry, ctx, f"{day.isoformat()}#{i}", None, opens)


_EXPANDERS = {
    "enrollment": _enrollment,
    "exit": _exit,
    "recurring": _recurring,
    "weekdays": _weekdays,
    "fixed_dates": _fixed_dates,
    "random_ema": _random_ema,
}


# --- event rules ----------------------------------------------------------------------------


def _event_rule(entry: Mapping, kind: str) -> dict:
    rule = _rule(entry)
    if rule["type"] != kind:
        raise ScheduleError(f"schedule entry {entry.get('key')!r} is not a {kind} rule")
    return rule


def occurrence_after_session(
    entry: Mapping,
    ctx: ParticipantContext,
    session_id: str | int,
    session_ended_at: datetime,
    *,
    earlier_same_day: int = 0,
) -> Occurrence | None:
    """The invitation after a chat session ends, or None.

    Opens ``gap_minutes`` after the session ends. ``earlier_same_day`` is how many occurrences
    of this entry already open on the same local day as this one (see :func:`local_day_bounds`);
    at ``max_per_day`` or more, nothing is produced. Key: ``session:<session_id>``.
    """
    _require_aware(session_ended_at, "session_ended_at")
    rule = _event_rule(entry, "after_chat_session")
    opens = session_ended_at.astimezone(UTC) + timedelta(minutes=rule["gap_minutes"])
    if "max_per_day" in rule and earlier_same_day >= rule["max_per_day"]:
        return None
    if not _allowed(ctx, opens, after_enrollment=False):
        return None
    return _make(entry, ctx, f"session:{session_id}", None, opens)


def occurrence_after_messages(
    entry: Mapping,
    ctx: ParticipantContext,
    message_count: int,
    at: datetime,
    *,
    previous_count: int | None = None,
) -> Occurrence | None:
    """The invitation for the highest message-count threshold reached, or None.

    Thresholds are ``count`` (once) or every multiple of ``count`` (``repeat: true``). Pass the
    count after the new message and ``at``, when it was sent (the invitation opens then). With
    ``previous_count``, only a threshold crossed in ``(previous_count, message_count]`` fires;
    without it the reached threshold is returned and the unique key deduplicates. When one
    batch crosses several thresholds only the highest gets an invitation.
    Key: ``messages:<threshold>``.
    """
    _require_aware(at, "at")
    rule = _event_rule(entry, "after_messages")
    step = int(rule["count"])
    if rule.get("repeat", False):
        threshold = (message_count // step) * step
    else:
        threshold = step if message_count >= step else 0
    if threshold == 0 or (previous_count is not None and threshold <= previous_count):
        return None
    opens = at.astimezone(UTC)
    if not _allowed(ctx, opens, after_enrollment=False):
        return None
    return _make(entry, ctx, f"messages:{threshold}", None, opens)


def occurrence_no_chat(
    entry: Mapping, ctx: ParticipantContext, last_chat_at: datetime | None, now: datetime
) -> Occurrence | None:
    """The invitation after ``days`` × 24 h without chatting, or None if not due yet.

    Silence is counted from ``last_chat_at`` (from enrollment if the participant never
    chatted) and the invitation opens when the silence reaches ``days`` whole 24-hour days —
    a fixed instant, so repeated calls during one silence give the same occurrence. Key:
    ``no_chat:<silence start, UTC, to the second>`` (``no_chat:enrollment`` if never chatted),
    one per silence period.
    """
    _require_aware(now, "now")
    _require_aware(last_chat_at, "last_chat_at")
    rule = _event_rule(entry, "no_chat")
    if last_chat_at is None:
        since, key = ctx.enrolled_at, "no_chat:enrollment"
    else:
        since = last_chat_at.astimezone(UTC)
        key = f"no_chat:{since:%Y-%m-%dT%H:%M:%SZ}"
    opens = max(since + timedelta(days=rule["days"]), ctx.enrolled_at)
    if now < opens or not _allowed(ctx, opens, after_enrollment=False):
        return None
    return _make(entry, ctx, key, None, opens)
