"""The schedule engine: turn protocol schedule entries into invitations, on time, once.

A beat tick (every minute) does bounded, bulk work:

1. materialize: cursors whose next occurrence has opened become invitations (one INSERT; the
   unique (participant, entry, occurrence) constraint makes a repeated tick harmless) and are
   marked to advance;
2. advance: up to ADVANCE_BATCH cursors compute their following occurrence (pure Python,
   surveys.schedule_rules) — spread over ticks, never all participants at once;
3. send: scheduled invitations that have opened are claimed with a conditional UPDATE carrying a
   claim token, conditions are re-checked (withdrawn, previous wave still open), and the rest are
   marked sent; notifications are queued after commit;
4. remind, 5. expire, 6. sweep rows a killed worker left in "sending".

Event rules (after a chat session, after N messages, after N days without chat) create
invitations directly from their events.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass, field
from functools import lru_cache

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from studyplatform.participants.models import Participant
from studyplatform.studies.models import ProtocolVersion, Study

from . import schedule_rules as rules
from .models import Invitation, ScheduleCursor

log = logging.getLogger(__name__)

# Advancing a cursor costs ~0.1-1 ms of Python; a burst (everyone's 18:00 weekly survey) is
# spread over a few ticks, long before those cursors' next occurrences.
ADVANCE_BATCH = 2_000
CLAIM_BATCH = 50_000
STUCK_AFTER = dt.timedelta(minutes=5)
FAR = dt.timedelta(days=3660)
LIVE = (Study.Status.PILOTING, Study.Status.RECRUITING, Study.Status.RUNNING)


@lru_cache(maxsize=256)
def _entries(version_id: int) -> dict[str, dict]:
    content = ProtocolVersion.objects.values_list("content", flat=True).get(pk=version_id)
    return {e["key"]: e for e in content.get("surveys", {}).get("schedule", [])}


def context_for(
    participant: Participant, duration_days: int, seed: str
) -> rules.ParticipantContext:
    return rules.ParticipantContext.for_study(
        enrolled_at=participant.enrolled_at,
        timezone=participant.timezone,
        duration_days=duration_days,
        seed=f"{seed}:{participant.code}",
        withdrawn_at=participant.withdrawn_at,
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


def _apply(cursor: ScheduleCursor, occ: rules.Occurrence | None) -> None:
    cursor.needs_advance = False
    if occ is None:
        cursor.next_opens_at = None
        cursor.next_occurrence_key = ""
        cursor.next_wave = None
        cursor.next_closes_at = None
        cursor.next_reminders = []
        return
    cursor.next_opens_at = occ.opens_at
    cursor.next_occurrence_key = occ.occurrence_key
    cursor.next_wave = occ.wave
    cursor.next_closes_at = occ.closes_at
    cursor.next_reminders = [t.isoformat() for t in occ.reminder_times]


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


def _materialize(now: dt.datetime, report: TickReport) -> None:
    due = list(
        ScheduleCursor.objects.filter(needs_advance=False, next_opens_at__lte=now).values_list(
            "id", flat=True
        )[:CLAIM_BATCH]
    )
    if not due:
        return
    # Claim: only cursors this tick flips from False to True are materialized by it.
    claim_ids = []
    for chunk in _chunks(due, 5000):
        ScheduleCursor.objects.filter(id__in=chunk, needs_advance=False).update(needs_advance=True)
        claim_ids.extend(chunk)
    rows = ScheduleCursor.objects.filter(id__in=claim_ids).values(
        "participant_id",
        "study_id",
        "entry_key",
        "next_occurrence_key",
        "next_wave",
        "next_opens_at",
        "next_closes_at",
        "next_reminders",
        "protocol_version_id",
    )
    invitations = []
    for r in rows.iterator(chunk_size=5000):
        if r["next_opens_at"] is None:
            continue
        entry = _entries(r["protocol_version_id"]).get(r["entry_key"])
        if entry is None:
            continue
        reminders = r["next_reminders"] or []
        invitations.append(
            Invitation(
                participant_id=r["participant_id"],
                study_id=r["study_id"],
                entry_key=r["entry_key"],
                occurrence_key=r["next_occurrence_key"],
                wave=r["next_wave"],
                instruments=entry["instruments"],
                protocol_version_id=r["protocol_version_id"],
                status=Invitation.Status.SCHEDULED,
                opens_at=r["next_opens_at"],
                closes_at=r["next_closes_at"],
                reminder_times=reminders,
                created_at=now,
            )
        )
    for chunk in _chunks(invitations, 5000):
        Invitation.objects.bulk_create(chunk, ignore_conflicts=True)
    report.materialized += len(invitations)


_ADVANCE_FIELDS = (
    "needs_advance",
    "next_opens_at",
    "next_occurrence_key",
    "next_wave",
    "next_closes_at",
    "next_reminders",
)


def _advance(now: dt.datetime, report: TickReport) -> None:
    cursors = list(
        ScheduleCursor.objects.filter(needs_advance=True)
        .select_related("participant")
        .order_by("next_opens_at")[:ADVANCE_BATCH]
    )
    # Studies once per batch, without their protocol JSON (rows would each re-read it).
    studies = Study.objects.only("duration_days", "allocation_seed").in_bulk(
        {c.study_id for c in cursors}
    )
    for cursor in cursors:
        p = cursor.participant
        entry = _entries(cursor.protocol_version_id).get(cursor.entry_key)
        if entry is None or p.status != Participant.Status.ACTIVE:
            _apply(cursor, None)
            continue
        study = studies[cursor.study_id]
        ctx = context_for(p, study.duration_days, study.allocation_seed)
        _apply(cursor, next_occurrence(entry, ctx, cursor.next_opens_at))
    _save_cursors(cursors)
    report.advanced += len(cursors)


def _save_cursors(cursors: list[ScheduleCursor]) -> None:
    """One parameterised UPDATE per row, sent as a single executemany: Django's bulk_update
    builds a CASE expression per field that costs ~1 ms of Python per row (measured by
    benchmarks/schedule_tick.py). Values are prepared by the model fields themselves."""
    if not cursors:
        return
    fields = [ScheduleCursor._meta.get_field(name) for name in _ADVANCE_FIELDS]
    table = connection.ops.quote_name(ScheduleCursor._meta.db_table)
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    sql = f"UPDATE {table} SET {assignments} WHERE id = %s"  # noqa: S608 - names from the model
    rows = [
        [f.get_db_prep_save(getattr(c, f.attname), connection) for f in fields] + [c.pk]
        for c in cursors
    ]
    with connection.cursor() as db:
        db.executemany(sql, rows)


def _claim(qs, now: dt.datetime) -> str:
    token = secrets.token_hex(8)
    qs.update(claim=token, claimed_at=now)
    return token


def _send(now: dt.datetime, report: TickReport) -> None:
    ids = list(
        Invitation.objects.filter(
            status=Invitation.Status.SCHEDULED, opens_at__lte=now
        ).values_list("id", flat=True)[:CLAIM_BATCH]
    )
    if not ids:
        return
    token = secrets.token_hex(8)
    for chunk in _chunks(ids, 5000):
        Invitation.objects.filter(id__in=chunk, status=Invitation.Status.SCHEDULED).update(
            status=Invitation.Status.SENDING, claim=token, claimed_at=now
        )
    claimed = Invitation.objects.filter(claim=token, status=Invitation.Status.SENDING)
    # Conditions re-checked just before sending.
    cancelled = claimed.exclude(participant__status=Participant.Status.ACTIVE).update(
        status=Invitation.Status.CANCELLED, cancelled_at=now
    )
    skip_ids = _previous_still_open(token, now)
    skipped = 0
    if skip_ids:
        skipped = Invitation.objects.filter(id__in=skip_ids).update(
            status=Invitation.Status.SKIPPED, skip_reason="previous_open"
        )
    to_send = list(
        Invitation.objects.filter(claim=token, status=Invitation.Status.SENDING).values_list(
            "id", "reminder_times"
        )
    )
    by_first_reminder: dict[str | None, list[int]] = {}
    for inv_id, reminders in to_send:
        by_first_reminder.setdefault(reminders[0] if reminders else None, []).append(inv_id)
    for first, group in by_first_reminder.items():
        for chunk in _chunks(group, 5000):
            Invitation.objects.filter(id__in=chunk).update(
                status=Invitation.Status.SENT,
                sent_at=now,
                next_reminder_at=dt.datetime.fromisoformat(first) if first else None,
            )
    sent_ids = [i for i, _ in to_send]
    report.sent += len(sent_ids)
    report.skipped += skipped
    report.cancelled += cancelled
    if sent_ids:
        report.notify.append(("invite", sent_ids))


def _previous_still_open(token: str, now: dt.datetime) -> list[int]:
    """Claimed invitations whose entry asks `previous_closed` while an earlier one is open."""
    claimed = list(
        Invitation.objects.filter(claim=token, status=Invitation.Status.SENDING).values_list(
            "id", "participant_id", "entry_key", "protocol_version_id", "opens_at"
        )
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
        ).values_list("participant_id", "entry_key")
    )
    return [c[0] for c in needing if (c[1], c[2]) in open_pairs]


def _remind(now: dt.datetime, report: TickReport) -> None:
    rows = list(
        Invitation.objects.filter(
            status__in=Invitation.OPEN, next_reminder_at__lte=now, closes_at__gt=now
        ).values_list("id", "reminders_sent", "reminder_times", "reminders_sent_at")[:CLAIM_BATCH]
    )
    reminded = []
    for inv_id, count, times, sent_at in rows:
        following = times[count + 1] if count + 1 < len(times) else None
        # Conditional on the count we read: a concurrent tick cannot send the same reminder.
        changed = Invitation.objects.filter(id=inv_id, reminders_sent=count).update(
            reminders_sent=count + 1,
            reminders_sent_at=[*sent_at, now.isoformat()],
            next_reminder_at=dt.datetime.fromisoformat(following) if following else None,
        )
        if changed == 1:
            reminded.append(inv_id)
    report.reminded += len(reminded)
    if reminded:
        report.notify.append(("reminder", reminded))


def _expire(now: dt.datetime, report: TickReport) -> None:
    report.expired += (
        Invitation.objects.filter(status__in=Invitation.PENDING, closes_at__lte=now)
        .exclude(status=Invitation.Status.SENDING)
        .update(status=Invitation.Status.EXPIRED, expired_at=now, next_reminder_at=None)
    )


def _sweep(now: dt.datetime, report: TickReport) -> None:
    """Invitations a killed worker left claimed go back to the queue (nothing was sent yet:
    notifications are queued only after the "sent" update commits)."""
    report.unstuck += Invitation.objects.filter(
        status=Invitation.Status.SENDING, claimed_at__lt=now - STUCK_AFTER
    ).update(status=Invitation.Status.SCHEDULED, claim="")


def _chunks(items, size):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def schedule_tick(now: dt.datetime | None = None) -> TickReport:
    """One beat tick. Safe to run twice at once or again after a crash."""
    from .tasks import send_notifications

    now = now or timezone.now()
    report = TickReport()
    with transaction.atomic():
        _sweep(now, report)
        _materialize(now, report)
    with transaction.atomic():
        _advance(now, report)
    with transaction.atomic():
        _send(now, report)
        _remind(now, report)
        _expire(now, report)
        notify = list(report.notify)
        transaction.on_commit(
            lambda: [
                send_notifications.delay(kind, chunk)
                for kind, ids in notify
                for chunk in _chunks(ids, 500)
            ]
        )
    with transaction.atomic():
        report.events += _session_events(now)
    return report


# --- event rules ---------------------------------------------------------------------------


def _event_entries(study: Study, kind: str) -> list[dict]:
    # Read the current version from the database: a cached Study may predate a protocol change.
    version_id = Study.objects.values_list("current_version_id", flat=True).get(pk=study.pk)
    return [e for e in _entries(version_id).values() if e["rule"]["type"] == kind]


def _create_from_occurrence(participant: Participant, entry: dict, occ, now) -> bool:
    created = Invitation.objects.bulk_create(
        [
            Invitation(
                participant=participant,
                study=participant.study,
                entry_key=entry["key"],
                occurrence_key=occ.occurrence_key,
                wave=occ.wave,
                instruments=entry["instruments"],
                protocol_version_id=Study.objects.values_list("current_version_id", flat=True).get(
                    pk=participant.study_id
                ),
                opens_at=occ.opens_at,
                closes_at=occ.closes_at,
                reminder_times=[t.isoformat() for t in occ.reminder_times],
                created_at=now,
            )
        ],
        ignore_conflicts=True,
    )
    return bool(created)


def on_chat_message(participant: Participant, *, now: dt.datetime | None = None) -> int:
    """After a participant's message: `after_messages` thresholds."""
    from studyplatform.chat.models import Message

    now = now or timezone.now()
    entries = _event_entries(participant.study, "after_messages")
    if not entries or participant.status != Participant.Status.ACTIVE:
        return 0
    count = Message.objects.filter(participant=participant, role="user", imported=False).count()
    ctx = context_for(
        participant, participant.study.duration_days, participant.study.allocation_seed
    )
    made = 0
    for entry in entries:
        occ = rules.occurrence_after_messages(entry, ctx, count, now, previous_count=count - 1)
        if occ is not None:
            made += _create_from_occurrence(participant, entry, occ, now)
    return made


def _session_events(now: dt.datetime) -> int:
    """`after_chat_session` and `no_chat` entries, from recent chat activity."""
    from studyplatform.chat.models import Message

    studies = [
        s
        for s in Study.objects.filter(status__in=LIVE).select_related("current_version")
        if any(
            e["rule"]["type"] in ("after_chat_session", "no_chat")
            for e in _entries(s.current_version_id).values()
        )
    ]
    made = 0
    for study in studies:
        gap = dt.timedelta(
            minutes=study.protocol.get("analysis", {}).get("session_gap_minutes", 30)
        )
        sessions = _event_entries(study, "after_chat_session")
        if sessions:
            # A session has ended when its last message is older than the session gap; look
            # back a day so a tick missed during an outage still catches it.
            recent = (
                Message.objects.filter(
                    participant__study=study,
                    role="user",
                    imported=False,
                    created_at__gt=now - gap - dt.timedelta(days=1),
                    participant__status=Participant.Status.ACTIVE,
                )
                .values("participant_id")
                .annotate(last_at=Max("created_at"), last_id=Max("id"))
                .filter(last_at__lte=now - gap)
            )
            participants = Participant.objects.in_bulk([r["participant_id"] for r in recent])
            for r in recent:
                p = participants[r["participant_id"]]
                ctx = context_for(p, study.duration_days, study.allocation_seed)
                for entry in sessions:
                    start, _ = rules.local_day_bounds(ctx, r["last_at"])
                    earlier = (
                        Invitation.objects.filter(
                            participant=p, entry_key=entry["key"], opens_at__gte=start
                        )
                        .exclude(occurrence_key=f"session:{r['last_id']}")
                        .count()
                    )
                    occ = rules.occurrence_after_session(
                        entry, ctx, str(r["last_id"]), r["last_at"], earlier_same_day=earlier
                    )
                    if occ is not None:
                        made += _create_from_occurrence(p, entry, occ, now)
        silent = _event_entries(study, "no_chat")
        if silent and now.minute == 0:  # hourly is precise enough for "N days without chat"
            last = dict(
                Message.objects.filter(participant__study=study, role="user", imported=False)
                .values("participant_id")
                .annotate(last=Max("created_at"))
                .values_list("participant_id", "last")
            )
            for p in Participant.objects.filter(study=study, status=Participant.Status.ACTIVE):
                ctx = context_for(p, study.duration_days, study.allocation_seed)
                for entry in silent:
                    occ = rules.occurrence_no_chat(entry, ctx, last.get(p.pk), now)
                    if occ is not None:
                        made += _create_from_occurrence(p, entry, occ, now)
    return made


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
