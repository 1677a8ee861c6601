"""Read queries for safety: the review queue of one study (high severity first), the
participant's messages around an alert, and the counts the daily digest sends. Every query is
scoped to one study and free of N+1 lookups.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, IntegerField, QuerySet, Value, When

from studyplatform.studies.models import Study

from .models import SafetyAlert
from .sources import message_source

# Queue position by severity: high first.
QUEUE_ORDER = {"high": 0, "medium": 1, "low": 2}


def safety_alerts_for_study(study: Study, *, status: str = "") -> QuerySet[SafetyAlert]:
    """The review queue: high severity first, then oldest first (the longest waiting)."""
    rank = Case(
        *[When(severity=s, then=Value(r)) for s, r in QUEUE_ORDER.items()],
        default=Value(len(QUEUE_ORDER)),
        output_field=IntegerField(),
    )
    qs = (
        SafetyAlert.objects.filter(study=study)
        .select_related("participant", "acknowledged_by", "resolved_by")
        .annotate(severity_rank=rank)
        .order_by("severity_rank", "created_at", "id")
    )
    if status:
        qs = qs.filter(status=status)
    return qs


def participant_messages_around(alert: SafetyAlert, *, hours: int = 24) -> Iterable[Any]:
    """The participant's chat messages from `hours` before to `hours` after the alert (read
    through the message source chat registers, since safety does not import chat)."""
    window = dt.timedelta(hours=hours)
    return message_source().messages_between(
        alert.participant_id, alert.created_at - window, alert.created_at + window
    )


@dataclass
class DigestSummary:
    """Unresolved alerts of one study, for the daily email (counts only, never excerpts)."""

    open_by_severity: dict[str, int]
    acknowledged_by_severity: dict[str, int]
    overdue: int
    oldest_created_at: dt.datetime | None

    @property
    def unresolved(self) -> int:
        return sum(self.open_by_severity.values()) + sum(self.acknowledged_by_severity.values())


def digest_summary(alerts: Iterable[SafetyAlert], *, now: dt.datetime) -> DigestSummary:
    """Summarise unresolved alerts; `overdue` counts open ones past their response time."""
    open_counts = dict.fromkeys(QUEUE_ORDER, 0)
    ack_counts = dict.fromkeys(QUEUE_ORDER, 0)
    overdue = 0
    oldest: dt.datetime | None = None
    for alert in alerts:
        if alert.status == SafetyAlert.Status.RESOLVED:
            continue
        target = open_counts if alert.status == SafetyAlert.Status.OPEN else ack_counts
        target[alert.severity] = target.get(alert.severity, 0) + 1
        overdue += alert_is_overdue(alert, now=now)
        oldest = alert.created_at if oldest is None else min(oldest, alert.created_at)
    return DigestSummary(open_counts, ack_counts, overdue, oldest)


def alert_is_overdue(alert: SafetyAlert, *, now: dt.datetime) -> bool:
    """Past its response time with nobody having acknowledged it. Acknowledging is the response
    the protocol's response time asks for, so an acknowledged alert is no longer overdue."""
    return alert.status == SafetyAlert.Status.OPEN and alert.due_at < now


def conversation_alerted_since(conversation_id: int, *, since: dt.datetime) -> bool:
    """Whether a message of this conversation raised an alert at or after `since`."""
    return SafetyAlert.objects.filter(
        message__conversation_id=conversation_id, created_at__gte=since
    ).exists()


def alert_raised(
    *, participant_id: int, source: str, detector: str, created_at: dt.datetime
) -> bool:
    """Whether this exact alert exists (a retried raise checks before raising it again)."""
    return SafetyAlert.objects.filter(
        participant_id=participant_id, source=source, detector=detector, created_at=created_at
    ).exists()
