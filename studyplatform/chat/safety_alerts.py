"""Raising safety alerts (chat messages, flagged survey answers) and notifying reviewers."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from studyplatform.core.audit import audit_record
from studyplatform.participants.models import Participant
from studyplatform.studies.protocol.runtime import response_time_hours

from .models import Message, SafetyAlert

EXCERPT_CHARS = 280


def excerpt_around(text: str, start: int, end: int, width: int = EXCERPT_CHARS) -> str:
    """The matched phrase with some context either side, at most `width` characters."""
    if len(text) <= width:
        return text
    pad = max(0, (width - (end - start)) // 2)
    lo, hi = max(0, start - pad), min(len(text), end + pad)
    return ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else "")


def safety_alert_raise(
    *,
    participant: Participant,
    source: str,
    severity: str,
    category: str,
    excerpt: str,
    detector: str,
    message: Message | None = None,
    now: dt.datetime | None = None,
) -> SafetyAlert:
    """Queue an alert for the study's safety reviewers and email the protocol's recipients."""
    from .tasks import notify_safety_alert

    now = now or timezone.now()
    study = participant.study
    hours = response_time_hours(study.protocol)  # clamped: stored protocols may predate maxima
    alert = SafetyAlert.objects.create(
        study=study,
        participant=participant,
        source=source,
        message=message,
        severity=severity,
        category=category,
        excerpt=excerpt[: EXCERPT_CHARS + 2],
        detector=detector,
        created_at=now,
        due_at=now + dt.timedelta(hours=hours),
    )
    audit_record(
        actor="system",
        action="safety.alert_raise",
        target=alert,
        study_slug=study.slug,
        data={
            "severity": severity,
            "category": category,
            "source": source,
            "participant": participant.code,
        },
    )
    transaction.on_commit(lambda: notify_safety_alert.delay(alert.pk))
    return alert
