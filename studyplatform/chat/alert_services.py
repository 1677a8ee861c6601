"""Working the safety-alert queue: acknowledging and resolving alerts (and auditing reads).

Status changes are conditional updates, so two reviewers clicking at once cannot both
acknowledge (or both resolve) the same alert: the second gets an `AlertStateError`.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from studyplatform.core.audit import audit_record

from .models import SafetyAlert


class AlertStateError(Exception):
    """The alert is not in a state that allows the requested change (shown to the user)."""


def _who_when(user, at: dt.datetime | None) -> str:
    name = user.get_username() if user is not None else "someone"
    return f"{name} at {at:%Y-%m-%d %H:%M} UTC" if at else name


def _append_note(alert: SafetyAlert, *, actor, now: dt.datetime, label: str, text: str) -> None:
    # Notes are encrypted, so they cannot be concatenated in SQL; the row is already locked by
    # the conditional UPDATE of the same transaction, so this read-modify-write is safe.
    line = f"[{now:%Y-%m-%d %H:%M} UTC] {actor.get_username()} — {label}"
    if text:
        line += f": {text}"
    fresh = SafetyAlert.objects.select_for_update().get(pk=alert.pk)
    fresh.notes = f"{fresh.notes}\n{line}" if fresh.notes else line
    fresh.save(update_fields=["notes"])


def alert_acknowledge(
    *, alert: SafetyAlert, actor, note: str = "", now: dt.datetime | None = None
) -> SafetyAlert:
    """Mark an open alert as being handled by `actor`. Raises AlertStateError if it is not open."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = SafetyAlert.objects.filter(pk=alert.pk, status=SafetyAlert.Status.OPEN).update(
            status=SafetyAlert.Status.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=actor
        )
        if claimed != 1:
            current = SafetyAlert.objects.select_related("acknowledged_by", "resolved_by").get(
                pk=alert.pk
            )
            if current.status == SafetyAlert.Status.RESOLVED:
                raise AlertStateError(
                    "This alert is already resolved "
                    f"(by {_who_when(current.resolved_by, current.resolved_at)})."
                )
            raise AlertStateError(
                "This alert was already acknowledged by "
                f"{_who_when(current.acknowledged_by, current.acknowledged_at)}."
            )
        _append_note(alert, actor=actor, now=now, label="acknowledged", text=note.strip())
        audit_record(
            actor=actor,
            action="safety.acknowledge",
            target=alert,
            study_slug=alert.study.slug,
            data={"participant": alert.participant.code, "severity": alert.severity},
        )
    return SafetyAlert.objects.get(pk=alert.pk)


def alert_resolve(
    *,
    alert: SafetyAlert,
    actor,
    note: str,
    escalation: str = "",
    now: dt.datetime | None = None,
) -> SafetyAlert:
    """Close an open or acknowledged alert with a note saying what was done.

    `escalation` records who else was involved (ethics board, clinician, emergency services).
    Raises AlertStateError if the alert is already resolved or the note is empty.
    """
    note = note.strip()
    if not note:
        raise AlertStateError("A note saying what was done is required to resolve an alert.")
    now = now or timezone.now()
    with transaction.atomic():
        claimed = (
            SafetyAlert.objects.filter(pk=alert.pk)
            .exclude(status=SafetyAlert.Status.RESOLVED)
            .update(status=SafetyAlert.Status.RESOLVED, resolved_at=now, resolved_by=actor)
        )
        if claimed != 1:
            current = SafetyAlert.objects.select_related("resolved_by").get(pk=alert.pk)
            raise AlertStateError(
                "This alert was already resolved by "
                f"{_who_when(current.resolved_by, current.resolved_at)}."
            )
        _append_note(alert, actor=actor, now=now, label="resolved", text=note)
        if escalation.strip():
            _append_note(alert, actor=actor, now=now, label="escalated", text=escalation.strip())
        audit_record(
            actor=actor,
            action="safety.resolve",
            target=alert,
            study_slug=alert.study.slug,
            # Free text stays in the encrypted notes; the audit log says only that it exists.
            data={
                "participant": alert.participant.code,
                "severity": alert.severity,
                "escalated": bool(escalation.strip()),
            },
        )
    return SafetyAlert.objects.get(pk=alert.pk)


def alert_view(*, alert: SafetyAlert, actor) -> None:
    """Record that `actor` read an alert's excerpt and the participant's surrounding messages."""
    audit_record(
        actor=actor,
        action="safety.read",
        target=alert,
        study_slug=alert.study.slug,
        data={"participant": alert.participant.code},
    )


def conversation_view(*, conversation, actor, study_slug: str) -> None:
    """Record that `actor` read a conversation's message content."""
    audit_record(
        actor=actor,
        action="chat.read",
        target=conversation,
        study_slug=study_slug,
        data={"participant": conversation.participant.code},
    )
