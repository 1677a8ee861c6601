"""Read queries behind the console's monitoring pages (dashboard, participants, team, runs,
exports).

Each function runs a fixed number of aggregate queries whatever the number of participants or
messages (no N+1) and returns plain data the views hand to templates and `charts`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import TruncDate

from studyplatform.chat.models import Message
from studyplatform.chat.selectors import chat_stats, percentile
from studyplatform.participants.models import Allocation, FunnelCount, Participant
from studyplatform.safety.models import SafetyAlert
from studyplatform.studies.models import Membership, Study
from studyplatform.studies.protocol.runtime import response_time_hours
from surveys.models import Invitation
from surveys.selectors import INVITED

FUNNEL_STAGES = ("visited", "screened", "eligible", "consented")
# Daily charts show at most this many days so the SVG stays readable on a laptop.
MAX_DAYS = 90
# The compliance heatmap shows this many of the most recently enrolled participants.
HEATMAP_LIMIT = 200

# Heatmap cell states, from an invitation's status. Skipped/cancelled invitations never reached
# the participant, so for compliance they are the same as "not yet".
CELL_STATE = {
    Invitation.Status.COMPLETED: "completed",
    Invitation.Status.EXPIRED: "expired",
    Invitation.Status.SENT: "open",
    Invitation.Status.OPENED: "open",
    Invitation.Status.STARTED: "open",
}
# When one cell holds several invitations (a wave re-issued under a new protocol version), the
# most informative state wins.
STATE_RANK = {"completed": 3, "open": 2, "expired": 1, "not_yet": 0}


def day_range(first: dt.date | None, last: dt.date) -> list[dt.date]:
    """Every day from `first` to `last`, capped to the last MAX_DAYS days."""
    if first is None or first > last:
        return []
    first = max(first, last - dt.timedelta(days=MAX_DAYS - 1))
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass
class Funnel:
    totals: dict[str, int]
    ineligible_by_rule: dict[str, int]
    status_counts: dict[str, int]
    pilots: int
    days: list[dt.date]
    daily: dict[str, list[int]]


def funnel(study: Study, *, today: dt.date) -> Funnel:
    """Totals and daily series: the anonymous stages from FunnelCount, then what became of the
    people who consented (active, completed, withdrawn) from Participant. Four queries."""
    per_day: dict[tuple[dt.date, str], int] = {}
    totals = dict.fromkeys(FUNNEL_STAGES, 0)
    ineligible: dict[str, int] = {}
    for day, stage, count in FunnelCount.objects.filter(study=study).values_list(
        "day", "stage", "count"
    ):
        per_day[(day, stage)] = per_day.get((day, stage), 0) + count
        if stage.startswith("ineligible:"):
            rule = stage.split(":", 1)[1]
            ineligible[rule] = ineligible.get(rule, 0) + count
        else:
            totals[stage] = totals.get(stage, 0) + count
    people = Participant.objects.filter(study=study).order_by()
    status = people.aggregate(
        active=Count("id", filter=Q(status=Participant.Status.ACTIVE)),
        completed=Count("id", filter=Q(status=Participant.Status.COMPLETED)),
        withdrawn=Count("id", filter=Q(status=Participant.Status.WITHDRAWN)),
        pilots=Count("id", filter=Q(is_pilot=True)),
    )
    pilots = status.pop("pilots")
    withdrawn_per_day = {
        row["day"]: row["n"]
        for row in people.filter(withdrawn_at__isnull=False)
        .annotate(day=TruncDate("withdrawn_at"))
        .values("day")
        .annotate(n=Count("id"))
    }
    starts = [d for d, _ in per_day] + list(withdrawn_per_day)
    days = day_range(min(starts) if starts else None, today)
    daily = {stage: [per_day.get((d, stage), 0) for d in days] for stage in FUNNEL_STAGES}
    daily["withdrawn"] = [withdrawn_per_day.get(d, 0) for d in days]
    return Funnel(totals, ineligible, status, pilots, days, daily)


def arm_balance(study: Study) -> list[tuple[str, int]]:
    """Allocations per arm (arms with none included), in the arms' order. Unblinding: only for
    roles with VIEW_ALLOCATION."""
    counts = dict(
        Allocation.objects.filter(participant__study=study)
        .values_list("arm__key")
        .annotate(n=Count("id"))
        .order_by()
    )
    keys = study.arms.order_by("id").values_list("key", flat=True)
    return [(key, counts.get(key, 0)) for key in keys]


@dataclass
class Compliance:
    participants: list[str]
    columns: list[tuple[str, int | None]]
    cells: list[list[str]]
    total_participants: int
    limited: bool
    waves: list[dict[str, Any]] = field(default_factory=list)


def wave_label(entry: str, wave: int | None) -> str:
    return entry if wave is None else f"{entry} {wave}"


def compliance(study: Study, *, limit: int = HEATMAP_LIMIT) -> Compliance:
    """Participants x (entry, wave) cells for the `limit` most recently enrolled participants,
    and completion rates per wave over everyone. Four queries."""
    people = Participant.objects.filter(study=study).order_by("-enrolled_at", "-id")
    total = people.count()
    shown = list(people.values_list("id", "code")[:limit])
    ids = [pid for pid, _ in shown]
    invitations = Invitation.objects.filter(study=study).order_by()
    columns = sorted(
        set(invitations.values_list("entry_key", "wave").distinct()),
        key=lambda c: (_entry_order(study, c[0]), c[1] if c[1] is not None else -1),
    )
    index = {col: i for i, col in enumerate(columns)}
    row_of = {pid: r for r, pid in enumerate(ids)}
    cells = [["not_yet"] * len(columns) for _ in ids]
    for pid, entry, wave, status in invitations.filter(participant_id__in=ids).values_list(
        "participant_id", "entry_key", "wave", "status"
    ):
        state = CELL_STATE.get(status, "not_yet")
        r, c = row_of[pid], index[(entry, wave)]
        if STATE_RANK[state] > STATE_RANK[cells[r][c]]:
            cells[r][c] = state
    per_wave = [
        {
            "entry": row["entry_key"],
            "wave": row["wave"],
            "label": wave_label(row["entry_key"], row["wave"]),
            "invited": row["invited"],
            "completed": row["completed"],
            "expired": row["expired"],
            "rate": row["completed"] / row["invited"] if row["invited"] else None,
        }
        for row in invitations.values("entry_key", "wave").annotate(
            invited=Count("id", filter=Q(status__in=INVITED)),
            completed=Count("id", filter=Q(status=Invitation.Status.COMPLETED)),
            expired=Count("id", filter=Q(status=Invitation.Status.EXPIRED)),
        )
    ]
    per_wave.sort(key=lambda w: (_entry_order(study, w["entry"]), w["wave"] or -1))
    return Compliance(
        participants=[code for _, code in shown],
        columns=columns,
        cells=cells,
        total_participants=total,
        limited=total > limit,
        waves=per_wave,
    )


def _entry_order(study: Study, entry: str) -> int:
    # The protocol's schedule order (baseline first, exit last) reads better than alphabetical.
    keys = [e.get("key") for e in study.protocol.get("surveys", {}).get("schedule", [])]
    return keys.index(entry) if entry in keys else len(keys)


def compliance_by_participant(participant_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(completed, invited) per participant id, one query for a page of participants."""
    rows = (
        Invitation.objects.filter(participant_id__in=participant_ids)
        .order_by()
        .values("participant_id")
        .annotate(
            invited=Count("id", filter=Q(status__in=INVITED)),
            completed=Count("id", filter=Q(status=Invitation.Status.COMPLETED)),
        )
    )
    return {row["participant_id"]: (row["completed"], row["invited"]) for row in rows}


def chat_volume(study: Study, *, today: dt.date, by_arm: bool) -> tuple[list[dt.date], dict]:
    """Participant messages per day (imported history excluded), per arm when `by_arm`."""
    qs = (
        Message.objects.filter(
            conversation__participant__study=study,
            role=Message.Role.USER,
            imported=False,
            conversation__imported=False,
        )
        .annotate(day=TruncDate("created_at"))
        .order_by()
    )
    group = ("day", "conversation__arm__key") if by_arm else ("day",)
    counts: dict[str, dict[dt.date, int]] = {}
    for row in qs.values(*group).annotate(n=Count("id")):
        key = row.get("conversation__arm__key", "all") if by_arm else "all"
        counts.setdefault(key, {})[row["day"]] = row["n"]
    first = min((d for per in counts.values() for d in per), default=None)
    days = day_range(first, today)
    return days, {key: [per.get(d, 0) for d in days] for key, per in sorted(counts.items())}


def model_stats(study: Study, *, by_arm: bool) -> list[dict[str, Any]]:
    """Reply latency p50/p95, error rate and (per arm only) the upstream models seen."""
    stats = chat_stats(study)
    total = stats.pop("_total")
    if not by_arm:
        # Without allocation rights no per-model counts either (one model per arm).
        return [{"arm": "", **total.as_dict(by_model=False)}]
    return [{"arm": key, **value.as_dict()} for key, value in stats.items()]


@dataclass
class SafetySummary:
    open: int
    acknowledged: int
    resolved: int
    overdue: int
    response_time_hours: float
    answered: int
    answered_in_time: int
    median_hours_to_ack: float | None
    p95_hours_to_ack: float | None


def safety_summary(study: Study, *, now: dt.datetime) -> SafetySummary:
    """Counts only (never excerpts): by status, overdue, and time to first response (the
    acknowledgement, or the resolution when an alert was resolved straight away) against the
    protocol's response time. Two queries."""
    hours = response_time_hours(study.protocol)
    alerts = SafetyAlert.objects.filter(study=study).order_by()
    counts = alerts.aggregate(
        open=Count("id", filter=Q(status=SafetyAlert.Status.OPEN)),
        acknowledged=Count("id", filter=Q(status=SafetyAlert.Status.ACKNOWLEDGED)),
        resolved=Count("id", filter=Q(status=SafetyAlert.Status.RESOLVED)),
        overdue=Count("id", filter=Q(status=SafetyAlert.Status.OPEN, due_at__lt=now)),
    )
    waits = [
        ((ack or res) - created).total_seconds() / 3600
        for created, ack, res in alerts.exclude(
            acknowledged_at__isnull=True, resolved_at__isnull=True
        ).values_list("created_at", "acknowledged_at", "resolved_at")
    ]
    median = percentile(waits, 0.5)
    p95 = percentile(waits, 0.95)
    return SafetySummary(
        response_time_hours=hours,
        answered=len(waits),
        answered_in_time=sum(1 for w in waits if w <= hours),
        median_hours_to_ack=round(median, 1) if median is not None else None,
        p95_hours_to_ack=round(p95, 1) if p95 is not None else None,
        **counts,
    )


def members_of(study: Study) -> list[dict[str, Any]]:
    """Members with their roles, one row per person (one query)."""
    people: dict[int, dict[str, Any]] = {}
    for membership in Membership.objects.filter(study=study).select_related("user"):
        row = people.setdefault(membership.user_id, {"user": membership.user, "memberships": []})
        row["memberships"].append(membership)
    return sorted(people.values(), key=lambda r: r["user"].get_username().lower())


@dataclass
class Overview:
    participants: dict[str, int]  # active, completed, withdrawn (pilots excluded)
    pilots: int
    open_alerts: int
    overdue_alerts: int


def study_overview(study: Study, *, now: dt.datetime) -> Overview:
    """The counts the overview page shows, whatever the viewer may see (the view drops what the
    viewer's roles do not open). Two queries."""
    people = Participant.objects.filter(study=study).order_by()
    counts = people.aggregate(
        active=Count("id", filter=Q(status=Participant.Status.ACTIVE, is_pilot=False)),
        completed=Count("id", filter=Q(status=Participant.Status.COMPLETED, is_pilot=False)),
        withdrawn=Count("id", filter=Q(status=Participant.Status.WITHDRAWN, is_pilot=False)),
        pilots=Count("id", filter=Q(is_pilot=True)),
    )
    alerts = SafetyAlert.objects.filter(study=study, status=SafetyAlert.Status.OPEN).aggregate(
        open=Count("id"), overdue=Count("id", filter=Q(due_at__lt=now))
    )
    pilots = counts.pop("pilots")
    return Overview(counts, pilots, alerts["open"], alerts["overdue"])
