"""The schedule engine: turn protocol schedule entries into invitations, on time, once.

A beat tick (every minute) does bounded, bulk work, in this order:

1. sweep: invitations a killed worker left in "sending" go back to the queue after STUCK_AFTER;
2. materialize: cursors whose next occurrence has opened become invitations (one INSERT …
   SELECT copying the cursors' columns, skipping conflicts: the unique (participant, entry,
   occurrence) constraint makes a repeated tick harmless) and are marked to advance. Due cursors
   are locked with SKIP LOCKED, so two ticks at once take different ones;
3. send: scheduled invitations that have opened, and whose window has not closed yet, are
   claimed with a conditional UPDATE carrying a claim token, conditions are re-checked
   (withdrawn: cancelled; previous wave still open: skipped), and the rest are marked sent with
   one UPDATE (their first reminder time was set when they were created); notifications are
   queued after commit;
4. remind: due reminders are recorded with one ``UPDATE … FROM`` per chunk of per-row values,
   each row conditional on the reminder count read, so a concurrent tick cannot send one twice;
5. expire: invitations whose window has closed, including any never sent (a backlog after an
   outage): nobody is invited to a window that has closed;
6. advance: cursors marked to advance compute their following occurrence (pure Python,
   surveys.schedule_rules) and are written back with one UPDATE per chunk;
7. event rules: after a chat session, after N days without chat (hourly), from recent chat
   activity, a few queries per study. (After N messages runs on each message: on_chat_message.)

Every phase works in batches (MATERIALIZE_BATCH, SEND_BATCH, ...). A phase always does its first
batch, so none starves, but takes no further batch once the tick has run for TICK_BUDGET_S; what
is left waits for the next tick, a minute later. So a tick takes about a second at most whatever
the number of participants, and a burst (everyone's 18:00 weekly survey, or the backlog after an
outage) drains over the following ticks. Advancing comes last because it is the least urgent: a
cursor is advanced long before its next occurrence opens (a day for a daily EMA, a week for a
weekly survey), and one whose next occurrence is already due is materialized by a later tick.

A new participant does not wait for the tick: once their consent commits, the materialize and
send phases run for them alone (``schedule_participant_now``, from surveys.hooks), so the
baseline survey is due on their first page. The same batch functions and claims make that pass
and a tick harmless to each other; the tick stays the safety net if the pass fails.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from studyplatform.participants.models import Participant
from studyplatform.studies.models import ProtocolVersion, Study
from studyplatform.studies.protocol.runtime import bounded_schedule_entry, session_gap_minutes

from . import schedule_rules as rules
from .bulk import chunks, insert_from_select, insert_ignoring_conflicts, typed, update_from_values
from .models import Invitation, ScheduleCursor

log = logging.getLogger(__name__)

# Per-tick bounds (see the module docstring). At 100,000 participants on PostgreSQL
# (benchmarks/schedule_tick.py) one batch of any phase takes about 0.05-0.1 s: advancing a
# cursor costs ~0.15 ms (mostly surveys.schedule_rules), the other phases ~0.05 ms a row. So a
# tick takes at most the budget, one batch of each phase and its commits: about 1.3 s there.
TICK_BUDGET_S = 0.5
MATERIALIZE_BATCH = 1_000
SEND_BATCH = 1_000
REMIND_BATCH = 1_000
EXPIRE_BATCH = 2_000
ADVANCE_BATCH = 500
STUCK_AFTER = dt.timedelta(minutes=5)
LIVE = (Study.Status.PILOTING, Study.Status.RECRUITING, Study.Status.RUNNING)
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


@lru_cache(maxsize=256)
def _entries(version_id: int) -> dict[str, dict]:
    content = ProtocolVersion.objects.values_list("content", flat=True).get(pk=version_id)
    # Numbers clamped into the schema's range: stored versions may predate its maxima.
    return {
        e["key"]: bounded_schedule_entry(e) for e in content.get("surveys", {}).get("schedule", [])
    }


def _context(
    *,
    enrolled_at: dt.datetime,
    timezone_name: str,
    code: str,
    withdrawn_at: dt.datetime | None,
    duration_days: int,
    seed: str,
) -> rules.ParticipantContext:
    return rules.ParticipantContext.for_study(
        enrolled_at=enrolled_at,
        timezone=timezone_name,
        duration_days=duration_days,
        seed=f"{seed}:{code}",
        withdrawn_at=withdrawn_at,
    )


def context_for(
    participant: Participant, duration_days: int, seed: str
) -> rules.ParticipantContext:
    return _context(
        enrolled_at=participant.enrolled_at,
        timezone_name=participant.timezone,
        code=participant.code,
        withdrawn_at=participant.withdrawn_at,
        duration_days=duration_days,
        seed=seed,
    )


def next_occurrence(
    entry: dict, ctx: rules.ParticipantContext, after: dt.datetime | None
) -> rules.Occurrence | None:
    """The first occurrence opening strictly after `after` (or at/after enrollment)."""
    start = ctx.enrolled_at if after is None else after + dt.timedelta(microseconds=1)
    span = dt.timedelta(days=2)
    while start < ctx.study_end + dt.timedelta(days=1):
        found = rules.occurrences_between(entry, ctx, start, start + span)
        if found:
            return found[0]
        start += span
        span = min(span * 2, dt.timedelta(days=64))
    return None


def _next_fields(occ: rules.Occurrence | None) -> dict:
    """A cursor's fields for its next occurrence (None: the series is over)."""
    if occ is None:
        return {
            "needs_advance": False,
            "next_opens_at": None,
            "next_occurrence_key": "",
            "next_wave": None,
            "next_closes_at": None,
            "next_reminders": [],
            "next_reminder_at": None,
        }
    return {
        "needs_advance": False,
        "next_opens_at": occ.opens_at,
        "next_occurrence_key": occ.occurrence_key,
        "next_wave": occ.wave,
        "next_closes_at": occ.closes_at,
        "next_reminders": [t.isoformat() for t in occ.reminder_times],
        "next_reminder_at": occ.reminder_times[0] if occ.reminder_times else None,
    }


def _apply(cursor: ScheduleCursor, occ: rules.Occurrence | None) -> None:
    for name, value in _next_fields(occ).items():
        setattr(cursor, name, value)


def schedule_init(participant: Participant, *, after: dt.datetime | None = None) -> int:
    """Create the participant's cursors for every time-based entry of the current protocol."""
    study = participant.study
    version = study.current_version
    cursors = []
    ctx = context_for(participant, study.duration_days, study.allocation_seed)
    for key, entry in _entries(version.pk).items():
        if entry["rule"]["type"] not in rules.TIME_BASED_RULES:
            continue
        cursor = ScheduleCursor(
            participant=participant, study=study, entry_key=key, protocol_version=version
        )
        _apply(cursor, next_occurrence(entry, ctx, after))
        cursors.append(cursor)
    ScheduleCursor.objects.bulk_create(cursors, ignore_conflicts=True)
    return len(cursors)


def _new_invitation(
    *,
    participant_id: int,
    study_id: int,
    version_id: int,
    entry: dict,
    occurrence_key: str,
    wave: int | None,
    opens_at: dt.datetime,
    closes_at: dt.datetime,
    reminders: list[str],
    now: dt.datetime,
) -> dict:
    """A new invitation's column values. Its first reminder time is set already, so sending is
    one UPDATE whatever the reminder times (reminders only go to open, i.e. sent, invitations)."""
    return {
        "participant_id": participant_id,
        "study_id": study_id,
        "entry_key": entry["key"],
        "occurrence_key": occurrence_key,
        "wave": wave,
        "instruments": entry["instruments"],
        "protocol_version_id": version_id,
        "status": Invitation.Status.SCHEDULED,
        "opens_at": opens_at,
        "closes_at": closes_at,
        "reminder_times": reminders,
        "next_reminder_at": dt.datetime.fromisoformat(reminders[0]) if reminders else None,
        "created_at": now,
    }


@dataclass
class TickReport:
    materialized: int = 0
    advanced: int = 0
    sent: int = 0
    skipped: int = 0
    cancelled: int = 0
    reminded: int = 0
    expired: int = 0
    unstuck: int = 0
    events: int = 0
    notify: list[tuple[str, list[int]]] = field(default_factory=list)


class Budget:
    """A tick's time budget: once it is spent, phases take no new batch."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def spent(self) -> bool:
        return time.monotonic() >= self.deadline


def _in_batches(batch: Callable[[], int], size: int, budget: Budget) -> None:
    """Run `batch` (which returns how many rows it took) until it takes fewer than `size`, so
    nothing is left, or the budget is spent. The first batch always runs."""
    while batch() >= size and not budget.spent():
        pass


def schedule_tick(now: dt.datetime | None = None) -> TickReport:
    """One beat tick. Safe to run twice at once or again after a crash."""
    now = now or timezone.now()
    report = TickReport()
    budget = Budget(TICK_BUDGET_S)
    # One transaction per group of phases: each commit waits for the WAL to reach the disk.
    with transaction.atomic():
        _sweep(now, report)
        _materialize(now, report, budget)
    with transaction.atomic():
        _send(now, report, budget)
        _remind(now, report, budget)
        _expire(now, report, budget)
        _notify_after_commit(report)
    with transaction.atomic():
        _advance(now, report, budget)
    with transaction.atomic():
        report.events += _session_events(now)
    return report


def schedule_participant_now(participant_id: int, *, now: dt.datetime | None = None) -> TickReport:
    """Do for one participant, now, what the next tick would do for them: materialize their due
    cursors and send their opened invitations, notifications queued after commit.

    Called after a consent commits, so the baseline survey is due on the participant's first
    page load instead of up to a tick later. The tick's own batch functions do the work,
    narrowed to this participant, so their claims apply: the cursor lock and the unique
    occurrence constraint on materializing, the conditional "scheduled" to "sending" claim on
    sending. A tick before, after or at the same time therefore creates no second invitation
    and sends no second email. Advancing the cursors is left to the tick (it is the least
    urgent phase; a materialized cursor waits for it, see the module docstring)."""
    now = now or timezone.now()
    report = TickReport()
    with transaction.atomic():
        _materialize_batch(now, report, participant_id=participant_id)
    with transaction.atomic():
        _send_batch(now, report, participant_id=participant_id)
        _notify_after_commit(report)
    return report


def _notify_after_commit(report: TickReport) -> None:
    from .tasks import send_notifications

    notify = list(report.notify)
    transaction.on_commit(
        lambda: [
            send_notifications.delay(kind, chunk)
            for kind, ids in notify
            for chunk in chunks(ids, 500)
        ]
    )


def _sweep(now: dt.datetime, report: TickReport) -> None:
    """Invitations a killed worker left claimed go back to the queue (nothing was sent yet:
    notifications are queued only after the "sent" update commits)."""
    report.unstuck += Invitation.objects.filter(
        status=Invitation.Status.SENDING, claimed_at__lt=now - STUCK_AFTER
    ).update(status=Invitation.Status.SCHEDULED, claim="")


def _materialize(now: dt.datetime, report: TickReport, budget: Budget) -> None:
    _in_batches(lambda: _materialize_batch(now, report), MATERIALIZE_BATCH, budget)


def _materialize_batch(
    now: dt.datetime, report: TickReport, *, participant_id: int | None = None
) -> int:
    # Locked until commit, and a concurrent tick skips locked rows: each due cursor is
    # materialized by one tick (the unique constraint would catch a second anyway).
    cursors = ScheduleCursor.objects.select_for_update(skip_locked=True)
    if participant_id is not None:
        cursors = cursors.filter(participant_id=participant_id)
    due = list(
        cursors.filter(needs_advance=False, next_opens_at__lte=now)
        .order_by("next_opens_at")
        .values_list("id", "protocol_version_id")[:MATERIALIZE_BATCH]
    )
    if not due:
        return 0
    ids = [pk for pk, _ in due]
    ScheduleCursor.objects.filter(id__in=ids).update(needs_advance=True)
    report.materialized += _invitations_from_cursors(ids, {v for _, v in due}, now)
    return len(due)


def _invitations_from_cursors(ids: list[int], versions: set[int], now: dt.datetime) -> int:
    """Each cursor's next occurrence becomes a scheduled invitation, copied column by column in
    SQL, with the instruments of its protocol entry (a cursor whose entry is gone from the
    protocol gets none: advancing ends it). One that exists already is skipped. Returns how
    many were created."""
    entries = [
        (v, key, e["instruments"]) for v in sorted(versions) for key, e in _entries(v).items()
    ]
    if not entries:
        return 0
    instruments = Invitation._meta.get_field("instruments")
    quote = connection.ops.quote_name
    cursors = ScheduleCursor._meta

    def column(name: str) -> str:
        return f"c.{quote(cursors.get_field(name).column)}"

    rows = ", ".join(["(%s, %s, %s)"] * len(entries))
    return insert_from_select(
        Invitation,
        with_sql=f"e (version_id, entry_key, instruments) AS (VALUES {rows})",
        with_params=[
            p
            for version, key, names in entries
            for p in (version, key, instruments.get_db_prep_save(names, connection))
        ],
        select={
            "participant_id": column("participant"),
            "study_id": column("study"),
            "entry_key": column("entry_key"),
            "occurrence_key": column("next_occurrence_key"),
            "wave": column("next_wave"),
            "instruments": typed("e.instruments", instruments),
            "protocol_version_id": column("protocol_version"),
            "opens_at": column("next_opens_at"),
            "closes_at": column("next_closes_at"),
            "reminder_times": column("next_reminders"),
            "next_reminder_at": column("next_reminder_at"),
        },
        values={"status": Invitation.Status.SCHEDULED, "created_at": now},
        source=(
            f"{quote(cursors.db_table)} c JOIN e ON e.version_id = {column('protocol_version')} "
            f"AND e.entry_key = {column('entry_key')} "
            f"WHERE {column('id')} IN ({', '.join(['%s'] * len(ids))})"
        ),
        params=ids,
    )


def _send(now: dt.datetime, report: TickReport, budget: Budget) -> None:
    _in_batches(lambda: _send_batch(now, report), SEND_BATCH, budget)


def _send_batch(now: dt.datetime, report: TickReport, *, participant_id: int | None = None) -> int:
    scheduled = Invitation.Status.SCHEDULED
    invitations = Invitation.objects.all()
    if participant_id is not None:
        invitations = invitations.filter(participant_id=participant_id)
    # Windows closing soonest first. Never invite to a window that has already closed (a backlog
    # after an outage): _expire takes those, so they do not hold up the rest either. The ids are
    # read first: as "id IN (subquery with LIMIT)" PostgreSQL may re-run the subquery per row.
    ids = list(
        invitations.filter(status=scheduled, opens_at__lte=now, closes_at__gt=now)
        .order_by("closes_at")
        .values_list("id", flat=True)[:SEND_BATCH]
    )
    if not ids:
        return 0
    token = secrets.token_hex(8)
    # Conditional on the status: of two ticks at once, only one claims a row.
    Invitation.objects.filter(id__in=ids, status=scheduled).update(
        status=Invitation.Status.SENDING, claim=token, claimed_at=now
    )
    # Unordered: the model's default ordering would join participants and studies to sort.
    claimed = Invitation.objects.filter(claim=token, status=Invitation.Status.SENDING).order_by()
    # Conditions re-checked just before sending.
    report.cancelled += claimed.exclude(participant__status=Participant.Status.ACTIVE).update(
        status=Invitation.Status.CANCELLED, cancelled_at=now, next_reminder_at=None
    )
    skip_ids = _previous_still_open(token, now)
    if skip_ids:
        report.skipped += Invitation.objects.filter(id__in=skip_ids).update(
            status=Invitation.Status.SKIPPED, skip_reason="previous_open", next_reminder_at=None
        )
    sent_ids = list(claimed.values_list("id", flat=True))
    claimed.update(status=Invitation.Status.SENT, sent_at=now)
    report.sent += len(sent_ids)
    if sent_ids:
        report.notify.append(("invite", sent_ids))
    return len(ids)


def _previous_still_open(token: str, now: dt.datetime) -> list[int]:
    """Claimed invitations whose entry asks `previous_closed` while an earlier one is open."""
    claimed = list(
        Invitation.objects.filter(claim=token, status=Invitation.Status.SENDING)
        .order_by()
        .values_list("id", "participant_id", "entry_key", "protocol_version_id", "opens_at")
    )
    needing = [
        c
        for c in claimed
        if "previous_closed" in _entries(c[3]).get(c[2], {}).get("conditions", [])
    ]
    if not needing:
        return []
    open_pairs = set(
        Invitation.objects.filter(
            participant_id__in={c[1] for c in needing},
            entry_key__in={c[2] for c in needing},
            status__in=Invitation.OPEN,
            closes_at__gt=now,
        )
        .order_by()
        .values_list("participant_id", "entry_key")
    )
    return [c[0] for c in needing if (c[1], c[2]) in open_pairs]


def _remind(now: dt.datetime, report: TickReport, budget: Budget) -> None:
    _in_batches(lambda: _remind_batch(now, report), REMIND_BATCH, budget)


def _remind_batch(now: dt.datetime, report: TickReport) -> int:
    due = list(
        Invitation.objects.filter(
            status__in=Invitation.OPEN, next_reminder_at__lte=now, closes_at__gt=now
        )
        .order_by("next_reminder_at")
        .values_list("id", "reminders_sent", "reminder_times", "reminders_sent_at")[:REMIND_BATCH]
    )
    reminded = _record_reminders(due, now)
    report.reminded += len(reminded)
    if reminded:
        report.notify.append(("reminder", reminded))
    return len(due)


def _record_reminders(due: list[tuple], now: dt.datetime) -> list[int]:
    """Count one more reminder for each (id, count read, reminder times, sent at) and move its
    next reminder time on; returns the ids changed. Each row is conditional on the count read
    and on the invitation still being open: when a concurrent tick (or a researcher's "remind
    now") got there first, that row is left alone, so no reminder is sent twice."""
    rows = []
    for inv_id, count, times, sent_at in due:
        following = times[count + 1] if count + 1 < len(times) else None
        rows.append(
            (
                inv_id,
                count,
                count + 1,
                [*sent_at, now.isoformat()],
                dt.datetime.fromisoformat(following) if following else None,
            )
        )
    return update_from_values(
        Invitation,
        rows,
        match_fields=["reminders_sent"],
        set_fields=["reminders_sent", "reminders_sent_at", "next_reminder_at"],
        where_in={"status": Invitation.OPEN},
    )


def _expire(now: dt.datetime, report: TickReport, budget: Budget) -> None:
    _in_batches(lambda: _expire_batch(now, report), EXPIRE_BATCH, budget)


def _expire_batch(now: dt.datetime, report: TickReport) -> int:
    # Not "sending": a claimed row is the sending tick's to finish (or the sweep's).
    closed = Invitation.objects.filter(
        status__in=(Invitation.Status.SCHEDULED, *Invitation.OPEN), closes_at__lte=now
    ).order_by()
    ids = list(closed.values_list("id", flat=True)[:EXPIRE_BATCH])
    if ids:
        report.expired += closed.filter(id__in=ids).update(
            status=Invitation.Status.EXPIRED, expired_at=now, next_reminder_at=None
        )
    return len(ids)


_ADVANCE_FIELDS = (
    "needs_advance",
    "next_opens_at",
    "next_occurrence_key",
    "next_wave",
    "next_closes_at",
    "next_reminders",
    "next_reminder_at",
)


def _advance(now: dt.datetime, report: TickReport, budget: Budget) -> None:
    _in_batches(lambda: _advance_batch(report), ADVANCE_BATCH, budget)


def _advance_batch(report: TickReport) -> int:
    # Oldest first; a concurrent tick skips the cursors this one has locked.
    due = list(
        ScheduleCursor.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(needs_advance=True)
        .order_by("next_opens_at")
        .values_list(
            "id",
            "study_id",
            "protocol_version_id",
            "entry_key",
            "next_opens_at",
            "participant__status",
            "participant__enrolled_at",
            "participant__timezone",
            "participant__code",
            "participant__withdrawn_at",
        )[:ADVANCE_BATCH]
    )
    if not due:
        return 0
    studies = {
        pk: (days, seed)
        for pk, days, seed in Study.objects.filter(id__in={row[1] for row in due}).values_list(
            "id", "duration_days", "allocation_seed"
        )
    }
    rows = []
    for cursor_id, study, version, key, after, status, enrolled_at, tz, code, gone in due:
        entry = _entries(version).get(key)
        occ = None
        if entry is not None and status == Participant.Status.ACTIVE:
            days, seed = studies[study]
            ctx = _context(
                enrolled_at=enrolled_at,
                timezone_name=tz,
                code=code,
                withdrawn_at=gone,
                duration_days=days,
                seed=seed,
            )
            occ = next_occurrence(entry, ctx, after)
        values = _next_fields(occ)
        rows.append((cursor_id, *(values[name] for name in _ADVANCE_FIELDS)))
    update_from_values(ScheduleCursor, rows, set_fields=_ADVANCE_FIELDS)
    report.advanced += len(due)
    return len(due)


# --- event rules ---------------------------------------------------------------------------


def _event_entries(
    study_id: int, kind: str, version_id: int | None = None
) -> tuple[int | None, list[dict]]:
    """The study's current protocol version and its entries of one event rule type. The
    version is read from the database (a cached Study may predate a protocol change) unless
    the caller passes the one it just read there (`version_id`)."""
    if version_id is None:
        version_id = Study.objects.values_list("current_version_id", flat=True).get(pk=study_id)
    if version_id is None:
        return None, []
    return version_id, [e for e in _entries(version_id).values() if e["rule"]["type"] == kind]


def _event_invitation(
    participant_id: int, study_id: int, version_id: int, entry: dict, occ, now: dt.datetime
) -> dict:
    return _new_invitation(
        participant_id=participant_id,
        study_id=study_id,
        version_id=version_id,
        entry=entry,
        occurrence_key=occ.occurrence_key,
        wave=occ.wave,
        opens_at=occ.opens_at,
        closes_at=occ.closes_at,
        reminders=[t.isoformat() for t in occ.reminder_times],
        now=now,
    )


def on_chat_message(
    participant: Participant, *, now: dt.datetime | None = None, version_id: int | None = None
) -> int:
    """After a participant's message: `after_messages` thresholds. `version_id`: the study's
    current protocol version when the caller read it from the database with the message
    (None: read here)."""
    from studyplatform.chat.models import Message

    now = now or timezone.now()
    version_id, entries = _event_entries(participant.study_id, "after_messages", version_id)
    if not entries or participant.status != Participant.Status.ACTIVE:
        return 0
    count = Message.objects.filter(participant=participant, role="user", imported=False).count()
    ctx = context_for(
        participant, participant.study.duration_days, participant.study.allocation_seed
    )
    invitations = []
    for entry in entries:
        occ = rules.occurrence_after_messages(entry, ctx, count, now, previous_count=count - 1)
        if occ is not None:
            invitations.append(
                _event_invitation(participant.pk, participant.study_id, version_id, entry, occ, now)
            )
    return insert_ignoring_conflicts(Invitation, invitations)


_PERSON = (
    "participant__code",
    "participant__timezone",
    "participant__enrolled_at",
    "participant__withdrawn_at",
)


def _session_events(now: dt.datetime) -> int:
    """`after_chat_session` and `no_chat` entries, from recent chat activity: a few queries per
    live study with such entries, whatever its number of participants."""
    made = 0
    for study in Study.objects.filter(status__in=LIVE, current_version__isnull=False).only(
        "id", "current_version_id", "duration_days", "allocation_seed"
    ):
        entries = _entries(study.current_version_id).values()
        sessions = [e for e in entries if e["rule"]["type"] == "after_chat_session"]
        silent = [e for e in entries if e["rule"]["type"] == "no_chat"]
        if sessions:
            made += _after_sessions(study, sessions, now)
        if silent and now.minute == 0:  # hourly is precise enough for "N days without chat"
            made += _after_silence(study, silent, now)
    return made


def _after_sessions(study: Study, entries: list[dict], now: dt.datetime) -> int:
    from studyplatform.chat.models import Message

    content = ProtocolVersion.objects.values_list("content", flat=True).get(
        pk=study.current_version_id
    )
    gap = dt.timedelta(minutes=session_gap_minutes(content))
    # A session has ended when its last message is older than the session gap; look back a
    # day so a tick missed during an outage still catches it.
    recent = list(
        Message.objects.filter(
            participant__study=study,
            role="user",
            imported=False,
            created_at__gt=now - gap - dt.timedelta(days=1),
            participant__status=Participant.Status.ACTIVE,
        )
        .values("participant_id", *_PERSON)
        .annotate(last_at=Max("created_at"), last_id=Max("id"))
        .filter(last_at__lte=now - gap)
    )
    if not recent:
        return 0
    # This entry's invitations that may open on the same local day as one of these sessions
    # (a local day starts less than two days before any instant in it), for max_per_day.
    since = min(r["last_at"] for r in recent) - dt.timedelta(days=2)
    existing: dict[tuple[int, str], list[tuple[str, dt.datetime]]] = defaultdict(list)
    for pid, key, occurrence, opens in (
        Invitation.objects.filter(
            study=study, entry_key__in=[e["key"] for e in entries], opens_at__gte=since
        )
        .order_by()
        .values_list("participant_id", "entry_key", "occurrence_key", "opens_at")
    ):
        existing[(pid, key)].append((occurrence, opens))
    invitations = []
    for r in recent:
        session = f"session:{r['last_id']}"
        ctx = None
        for entry in entries:
            mine = existing[(r["participant_id"], entry["key"])]
            if any(occurrence == session for occurrence, _ in mine):
                continue  # this session was handled by an earlier tick
            ctx = ctx or _person_context(r, study)
            start, _ = rules.local_day_bounds(ctx, r["last_at"])
            earlier = sum(1 for _, opens in mine if opens >= start)
            occ = rules.occurrence_after_session(
                entry, ctx, str(r["last_id"]), r["last_at"], earlier_same_day=earlier
            )
            if occ is not None:
                invitations.append(
                    _event_invitation(
                        r["participant_id"], study.pk, study.current_version_id, entry, occ, now
                    )
                )
    return insert_ignoring_conflicts(Invitation, invitations)


def _after_silence(study: Study, entries: list[dict], now: dt.datetime) -> int:
    from studyplatform.chat.models import Message

    last_chat = dict(
        Message.objects.filter(participant__study=study, role="user", imported=False)
        .values("participant_id")
        .annotate(last=Max("created_at"))
        .values_list("participant_id", "last")
    )
    last_invited = {
        (pid, key): opens
        for pid, key, opens in Invitation.objects.filter(
            study=study, entry_key__in=[e["key"] for e in entries]
        )
        .values("participant_id", "entry_key")
        .annotate(last=Max("opens_at"))
        .values_list("participant_id", "entry_key", "last")
    }
    invitations = []
    people = Participant.objects.filter(study=study, status=Participant.Status.ACTIVE).order_by()
    for pid, code, tz, enrolled_at, withdrawn_at in people.values_list(
        "id", "code", "timezone", "enrolled_at", "withdrawn_at"
    ).iterator(chunk_size=5000):
        last = last_chat.get(pid)
        ctx = None
        for entry in entries:
            # Cheap checks first, as this runs over every active participant: the silence has
            # not lasted `days` yet, or this silence already has its invitation (it opens once
            # the silence reaches `days`; an earlier silence's opened before).
            due_at = (last or enrolled_at) + dt.timedelta(days=entry["rule"]["days"])
            if now < due_at or last_invited.get((pid, entry["key"]), _NEVER) >= due_at:
                continue
            ctx = ctx or _context(
                enrolled_at=enrolled_at,
                timezone_name=tz,
                code=code,
                withdrawn_at=withdrawn_at,
                duration_days=study.duration_days,
                seed=study.allocation_seed,
            )
            occ = rules.occurrence_no_chat(entry, ctx, last, now)
            if occ is not None:
                invitations.append(
                    _event_invitation(pid, study.pk, study.current_version_id, entry, occ, now)
                )
    return insert_ignoring_conflicts(Invitation, invitations)


def _person_context(row: dict, study: Study) -> rules.ParticipantContext:
    return _context(
        enrolled_at=row["participant__enrolled_at"],
        timezone_name=row["participant__timezone"],
        code=row["participant__code"],
        withdrawn_at=row["participant__withdrawn_at"],
        duration_days=study.duration_days,
        seed=study.allocation_seed,
    )


# --- lifecycle hooks -------------------------------------------------------------------------


def on_withdrawal(participant: Participant) -> None:
    """From the moment of withdrawal nothing more is sent."""
    now = timezone.now()
    Invitation.objects.filter(participant=participant, status__in=Invitation.PENDING).update(
        status=Invitation.Status.CANCELLED, cancelled_at=now, next_reminder_at=None
    )
    ScheduleCursor.objects.filter(participant=participant).delete()


def reschedule_participant(participant: Participant, *, now: dt.datetime) -> int:
    """Recompute one participant's future occurrences (after a time-zone change)."""
    ScheduleCursor.objects.filter(participant=participant).delete()
    return schedule_init(participant, after=max(now, participant.enrolled_at))


def schedule_resync(study: Study, *, now: dt.datetime | None = None) -> int:
    """After a protocol change: future occurrences follow the new version; invitations already
    created keep the version they were created under."""
    now = now or timezone.now()
    ScheduleCursor.objects.filter(study=study).delete()
    count = 0
    for participant in Participant.objects.filter(study=study, status=Participant.Status.ACTIVE):
        count += reschedule_participant(participant, now=now)
    return count


def due_for(participant: Participant, now: dt.datetime | None = None):
    """What the participant can answer now (for the home page)."""
    now = now or timezone.now()
    return Invitation.objects.filter(
        participant=participant, status__in=Invitation.OPEN, opens_at__lte=now, closes_at__gt=now
    ).order_by("closes_at")
