"""Compliance with the protocol's usage requirement: per-day usage, progress, nudges.

Per-day usage is computed by ``analysis.features.usage.daily_usage`` itself, from the
participant's stored messages, with the protocol's ``analysis.session_gap_minutes``: the
"active minutes" a participant sees on their home page are the ``active_minutes`` an analysis
or an export of the same messages reports. Local days come from the survey schedule's
participant-local calendar (``surveys.schedule_rules``), so "day 3" here is day 3 there.

Nothing here runs on the chat send path: a stored message only enqueues
``compliance_refresh_task`` after commit (see hooks.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Iterable

import pandas as pd
from django.db import transaction
from django.db.models import Max, Min, Sum
from django.utils import timezone

from analysis.features.usage import daily_usage
from studyplatform.chat.models import Message
from studyplatform.participants.models import Participant
from studyplatform.studies.models import Study
from studyplatform.studies.protocol.runtime import session_gap_minutes
from surveys import schedule_rules
from surveys.engine import context_for

from .models import ComplianceDay, UsageNudge
from .rules import Progress, Requirement, period_bounds, progress, requirement_from_protocol

log = logging.getLogger(__name__)

NUDGE_BATCH = 500
# A nudge checked this long after its time is dropped (expired): after an outage, a message
# about "yesterday" a day late would be about the wrong day.
NUDGE_LATE_AFTER = dt.timedelta(hours=12)
STUCK_AFTER = dt.timedelta(minutes=5)
_MIDNIGHT = dt.time(0, 0)
# A closed (or paused) study nudges nobody.
LIVE_STUDY = (Study.Status.PILOTING, Study.Status.RECRUITING, Study.Status.RUNNING)


def requirement_for(study: Study) -> Requirement | None:
    return requirement_from_protocol(study.protocol)


def _context(participant: Participant) -> schedule_rules.ParticipantContext:
    study = participant.study
    return context_for(participant, study.duration_days, study.allocation_seed)


# -- per-day usage ------------------------------------------------------------------------------


def _daily_frame(participant: Participant, *, since: dt.datetime | None) -> pd.DataFrame:
    """The usage features' daily frame of this participant, from messages at or after
    ``since`` (all when None)."""
    messages = Message.objects.filter(participant=participant, imported=False)
    if since is not None:
        messages = messages.filter(created_at__gte=since)
    rows = list(
        messages.order_by("created_at", "id").values_list(
            "conversation_id", "role", "created_at", "latency_ms"
        )
    )
    if not rows:
        return pd.DataFrame(columns=["date", "study_day", "active_minutes", "messages_sent"])
    frame = pd.DataFrame(rows, columns=["conversation", "role", "created_at", "latency_ms"])
    frame["participant"] = participant.code
    frame["conversation"] = frame["conversation"].astype(str)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"]).astype(float)
    people = pd.DataFrame(
        {
            "participant": [participant.code],
            "timezone": [participant.timezone],
            "enrolled_at": pd.to_datetime([participant.enrolled_at], utc=True),
        }
    )
    return daily_usage(
        frame, people, session_gap_minutes=session_gap_minutes(participant.study.protocol)
    )


def _window_start(participant: Participant, since: dt.datetime) -> dt.datetime | None:
    """Where to start reading messages so that every session starting at or after ``since`` is
    whole and none starting before it is mistaken for a new one: a day earlier, or everything
    (None) when a session runs without a break across that point."""
    start = since - dt.timedelta(days=1)
    live = Message.objects.filter(participant=participant, imported=False)
    first_after = live.filter(created_at__gte=start).aggregate(t=Min("created_at"))["t"]
    last_before = live.filter(created_at__lt=start).aggregate(t=Max("created_at"))["t"]
    if first_after is None or last_before is None:
        return start
    gap = dt.timedelta(minutes=session_gap_minutes(participant.study.protocol))
    return None if first_after - last_before <= gap else start


def compliance_refresh(
    *, participant: Participant, now: dt.datetime | None = None, since: dt.date | None = None
) -> int:
    """Recompute the participant's ComplianceDay rows from local date ``since`` (default:
    yesterday) on; ``since=date.min`` recomputes every day. Returns the rows written.

    Serialised per participant (a row lock), so two refreshes at once cannot collide."""
    now = now or timezone.now()
    ctx = _context(participant)
    if since is None:
        since = schedule_rules.local_date_of(ctx, now) - dt.timedelta(days=1)
    full = since <= schedule_rules.local_date_of(ctx, participant.enrolled_at)
    start = (
        None
        if full
        else _window_start(participant, schedule_rules.local_to_utc(ctx, since, _MIDNIGHT))
    )
    with transaction.atomic():
        Participant.objects.select_for_update().filter(pk=participant.pk).first()
        daily = _daily_frame(participant, since=start)
        rows = [
            ComplianceDay(
                participant=participant,
                date=record["date"].date(),
                study_day=int(record["study_day"]),
                active_minutes=float(record["active_minutes"]),
                messages=int(record["messages_sent"]),
                computed_at=now,
            )
            for record in daily.to_dict("records")
            if full or record["date"].date() >= since
        ]
        days = ComplianceDay.objects.filter(participant=participant)
        if not full:
            days = days.filter(date__gte=since)
        days.delete()
        ComplianceDay.objects.bulk_create(rows)
    return len(rows)


def compliance_recompute_study(*, study: Study, now: dt.datetime | None = None) -> int:
    """Every participant's rows of ``study`` from their messages (management command)."""
    written = 0
    for participant in Participant.objects.filter(study=study).select_related("study"):
        written += compliance_refresh(participant=participant, now=now, since=dt.date.min)
    return written


def daily_usage_of(participant: Participant) -> dict[dt.date, tuple[float, int]]:
    """Local date -> (active minutes, messages sent), computed now from all the messages
    (what an export reports; the cached ComplianceDay rows are the same numbers)."""
    return {
        record["date"].date(): (float(record["active_minutes"]), int(record["messages_sent"]))
        for record in _daily_frame(participant, since=None).to_dict("records")
    }


def usage_by_date(participant: Participant) -> dict[dt.date, tuple[float, int]]:
    return {
        d: (m, n)
        for d, m, n in ComplianceDay.objects.filter(participant=participant).values_list(
            "date", "active_minutes", "messages"
        )
    }


def participant_progress(
    participant: Participant, *, now: dt.datetime | None = None
) -> Progress | None:
    """Where the participant stands today, or None when the study sets no requirement."""
    requirement = requirement_for(participant.study)
    if requirement is None:
        return None
    now = now or timezone.now()
    ctx = _context(participant)
    return progress(
        requirement,
        day0=schedule_rules.local_date_of(ctx, participant.enrolled_at),
        today=schedule_rules.local_date_of(ctx, now),
        duration_days=participant.study.duration_days,
        usage=usage_by_date(participant),
    )


# -- nudges -------------------------------------------------------------------------------------


def _planned_nudges(
    participant: Participant, requirement: Requirement, now: dt.datetime
) -> list[UsageNudge]:
    """One scheduled nudge per counted period whose nudge time is still ahead and falls
    before the participant's study end (a nudge after the study has ended helps nobody)."""
    if requirement.nudge_time is None:
        return []
    ctx = _context(participant)
    day0 = schedule_rules.local_date_of(ctx, participant.enrolled_at)
    planned = []
    for index in range(requirement.counted_periods(participant.study.duration_days)):
        first, last = period_bounds(requirement, day0, index)
        due = schedule_rules.local_to_utc(ctx, last + dt.timedelta(days=1), requirement.nudge_time)
        if due >= ctx.study_end:
            break
        if due <= now:
            continue
        planned.append(
            UsageNudge(
                participant=participant,
                period=index,
                period_first=first,
                period_last=last,
                due_at=due,
                channels=list(requirement.nudge_channels),
            )
        )
    return planned


def nudges_schedule(*, participant: Participant, now: dt.datetime | None = None) -> int:
    """Create the participant's future nudges (existing periods are left as they are)."""
    now = now or timezone.now()
    requirement = requirement_for(participant.study)
    if requirement is None or participant.status != Participant.Status.ACTIVE:
        return 0
    planned = _planned_nudges(participant, requirement, now)
    UsageNudge.objects.bulk_create(planned, ignore_conflicts=True)
    return len(planned)


def nudges_resync(*, participant: Participant, now: dt.datetime | None = None) -> int:
    """After a protocol or time-zone change: future nudges re-planned from the current rule."""
    now = now or timezone.now()
    with transaction.atomic():
        # Only nudges still ahead: one whose time has come is the tick's to decide, under the
        # rule in force when it came due.
        UsageNudge.objects.filter(
            participant=participant, status=UsageNudge.Status.SCHEDULED, due_at__gt=now
        ).delete()
        return nudges_schedule(participant=participant, now=now)


def nudges_resync_study(*, study: Study, now: dt.datetime | None = None) -> int:
    made = 0
    for participant in Participant.objects.filter(
        study=study, status=Participant.Status.ACTIVE
    ).select_related("study"):
        made += nudges_resync(participant=participant, now=now)
    return made


def nudges_cancel(*, participant: Participant, now: dt.datetime | None = None) -> int:
    return UsageNudge.objects.filter(
        participant=participant, status=UsageNudge.Status.SCHEDULED
    ).update(status=UsageNudge.Status.CANCELLED, claimed_at=now or timezone.now())


def _period_totals(nudge: UsageNudge) -> tuple[float, int]:
    sums = ComplianceDay.objects.filter(
        participant_id=nudge.participant_id,
        date__gte=nudge.period_first,
        date__lte=nudge.period_last,
    ).aggregate(minutes=Sum("active_minutes"), messages=Sum("messages"))
    return float(sums["minutes"] or 0), int(sums["messages"] or 0)


def _decide(nudge: UsageNudge, now: dt.datetime) -> None:
    participant = nudge.participant
    requirement = requirement_for(participant.study)
    live = participant.study.status in LIVE_STUDY
    if participant.status != Participant.Status.ACTIVE or requirement is None or not live:
        nudge.status = UsageNudge.Status.CANCELLED
        return
    if now - nudge.due_at > NUDGE_LATE_AFTER:
        nudge.status = UsageNudge.Status.EXPIRED
        return
    # The period is over: its days are recomputed from the messages before deciding, so a
    # refresh task that has not run (or failed) cannot make a met day look missed.
    compliance_refresh(participant=participant, now=now, since=nudge.period_first)
    minutes, messages = _period_totals(nudge)
    nudge.active_minutes, nudge.messages = minutes, messages
    if requirement.met(minutes, messages):
        nudge.status = UsageNudge.Status.NOT_NEEDED
    else:
        nudge.status = UsageNudge.Status.SENT
        nudge.sent_at = now


def nudge_tick(now: dt.datetime | None = None) -> dict[str, int]:
    """Check the nudges whose time has come; send those for missed periods. Safe to run twice
    at once: rows are claimed with a conditional update, and only the claimer decides."""
    from .tasks import send_nudge_emails

    now = now or timezone.now()
    report = {"unstuck": 0, "checked": 0, "sent": 0}
    report["unstuck"] = UsageNudge.objects.filter(
        status=UsageNudge.Status.SENDING, claimed_at__lt=now - STUCK_AFTER
    ).update(status=UsageNudge.Status.SCHEDULED, claim="")
    ids = list(
        UsageNudge.objects.filter(status=UsageNudge.Status.SCHEDULED, due_at__lte=now)
        .order_by("due_at")
        .values_list("id", flat=True)[:NUDGE_BATCH]
    )
    if not ids:
        return report
    token = secrets.token_hex(8)
    UsageNudge.objects.filter(id__in=ids, status=UsageNudge.Status.SCHEDULED).update(
        status=UsageNudge.Status.SENDING, claim=token, claimed_at=now
    )
    claimed = UsageNudge.objects.filter(claim=token, status=UsageNudge.Status.SENDING)
    for nudge in claimed.select_related("participant__study").order_by("due_at"):
        with transaction.atomic():
            _decide(nudge, now)
            nudge.save(
                update_fields=["status", "sent_at", "active_minutes", "messages", "claimed_at"]
            )
            report["checked"] += 1
            if nudge.status == UsageNudge.Status.SENT:
                report["sent"] += 1
                if "email" in nudge.channels:
                    nudge_id = nudge.pk
                    transaction.on_commit(lambda n=nudge_id: send_nudge_emails.delay([n]))
    return report


def nudges_in_app(participant: Participant, *, now: dt.datetime | None = None) -> list[UsageNudge]:
    """The in-app nudges to show on the home page: sent in the last day. The first showing is
    recorded (seen_at), so researchers can tell a nudge that reached the participant."""
    now = now or timezone.now()
    shown = [
        n
        for n in UsageNudge.objects.filter(
            participant=participant,
            status=UsageNudge.Status.SENT,
            sent_at__gt=now - dt.timedelta(days=1),
        ).order_by("-period")
        if "in_app" in n.channels
    ]
    unseen = [n.pk for n in shown if n.seen_at is None]
    if unseen:
        UsageNudge.objects.filter(pk__in=unseen, seen_at__isnull=True).update(seen_at=now)
    return shown


def participant_compliance_delete(*, participant: Participant) -> dict[str, int]:
    days, _ = ComplianceDay.objects.filter(participant=participant).delete()
    nudges, _ = UsageNudge.objects.filter(participant=participant).delete()
    return {"compliance_days": days, "usage_nudges": nudges}


def participant_compliance_rows(participant: Participant) -> Iterable[dict]:
    for day in ComplianceDay.objects.filter(participant=participant).order_by("date"):
        yield {
            "date": day.date.isoformat(),
            "study_day": day.study_day,
            "active_minutes": round(day.active_minutes, 2),
            "messages": day.messages,
        }
