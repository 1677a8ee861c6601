"""Safety writes: screening a participant's chat message, raising alerts (from chat or a flagged
survey answer) and retrying the ones that failed, working the review queue, and the crisis
resources participants see.

The safety path must never be broken by configuration or by a failure while raising an alert:
the participant's message or answer is stored and crisis resources are shown whatever happens
here. `safety_alert_raise_guarded` runs the raise in a savepoint; a failure is logged, recorded
as a `safety.alert_failed` audit event and retried by a Celery task, and the beat sweep
(`safety_alert_sweep`) retries recorded failures that still have no alert.

Queue status changes are conditional updates, so two reviewers clicking at once cannot both
acknowledge (or both resolve) the same alert: the second gets an `AlertStateError`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.safestring import SafeString

from studyplatform.core.audit import audit_record
from studyplatform.core.i18n import localized
from studyplatform.core.markdown import render_markdown
from studyplatform.participants.models import Participant
from studyplatform.studies.protocol.runtime import response_time_hours

from .detector import Detection, detect
from .models import SafetyAlert
from .sources import message_source

EXCERPT_CHARS = 280
ALERT_FAILED_ACTION = "safety.alert_failed"

log = logging.getLogger(__name__)


# --- raising alerts --------------------------------------------------------------------------


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
    message: Any | None = None,
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
    # robust: a broker outage must not turn the participant's stored message into an error
    # page; the alert is in the queue and in the daily digest whatever happens to this email.
    transaction.on_commit(lambda: notify_safety_alert.delay(alert.pk), robust=True)
    return alert


def safety_alert_raise_guarded(
    *,
    source: str,
    object_id: int,
    study_slug: str,
    raise_alert: Callable[[], SafetyAlert | None],
) -> SafetyAlert | None:
    """Run `raise_alert` in a savepoint and never raise.

    `source` ("chat" or "survey") and `object_id` (the message or response id) say what to
    retry. On failure the savepoint is rolled back (the caller's message or answer stays), the
    error is logged, a `safety.alert_failed` audit event records what is owed, and a retry task
    is queued after commit.
    """
    try:
        with transaction.atomic():
            return raise_alert()
    except Exception:
        log.exception("raising a %s safety alert for %s failed; retrying later", source, object_id)
    try:
        with transaction.atomic():
            audit_record(
                actor="system",
                action=ALERT_FAILED_ACTION,
                study_slug=study_slug,
                data={"source": source, "id": object_id},
            )
    except Exception:
        log.exception("could not record the failed %s alert for %s", source, object_id)
    transaction.on_commit(lambda: _queue_retry(source, object_id), robust=True)
    return None


def _queue_retry(source: str, object_id: int) -> None:
    from .tasks import safety_alert_retry

    safety_alert_retry.delay(source, object_id)


# --- chat messages ---------------------------------------------------------------------------


def _detector_config(participant: Participant) -> dict[str, Any]:
    return participant.study.protocol.get("safety", {}).get("detector", {})


def message_screen_quiet(*, participant: Participant, text: str) -> bool:
    """Whether message_screen would find nothing to do for this text: no moderation queued and
    the lexicon detector silent (or off). The chat send then stores the message without a
    transaction around it (chat/message_record.py); otherwise the screen runs in one."""
    config = _detector_config(participant)
    if config.get("moderation"):
        return False
    return not config.get("lexicon", True) or detect(text, None) is None


def message_screen(
    *, participant: Participant, message: Any, text: str, now: dt.datetime
) -> dict[str, Any] | None:
    """Screen a just-stored participant message, inside the caller's transaction.

    Returns the severity and category when the lexicon detector fired (the caller shows crisis
    resources), else None. With `safety.detector.moderation` the message is also queued for the
    moderation endpoint after commit.
    """
    config = _detector_config(participant)
    if config.get("moderation"):
        from .tasks import moderate_message

        transaction.on_commit(lambda: moderate_message.delay(message.pk))
    if not config.get("lexicon", True):
        return None
    hit = detect(text, None)
    if hit is None:
        return None
    # Guarded: the message is stored and the crisis resources are shown even when raising the
    # alert fails (bad configuration, a database error); the alert is then retried.
    safety_alert_raise_guarded(
        source="chat",
        object_id=message.pk,
        study_slug=participant.study.slug,
        raise_alert=lambda: _raise_message_alert(participant, message, text, hit, now),
    )
    return {"severity": hit.severity, "category": hit.category}


def _raise_message_alert(
    participant: Participant, message: Any, text: str, hit: Detection, now: dt.datetime
) -> SafetyAlert:
    return safety_alert_raise(
        participant=participant,
        source="chat",
        severity=hit.severity,
        category=hit.category,
        excerpt=excerpt_around(text, hit.start, hit.end),
        detector=f"lexicon:{hit.entry_id}",
        message=message,
        now=now,
    )


def message_alert_owed(*, message_id: int) -> SafetyAlert | None:
    """Raise the alert a stored participant message is owed (a retry after a failure): None
    when the message is gone (withdrawal with deletion), already has an alert, or no longer
    trips the detector. Due time counts from when the participant wrote it."""
    message = message_source().participant_message(message_id)
    if message is None or SafetyAlert.objects.filter(message=message).exists():
        return None
    hit = detect(message.content, None)
    if hit is None:
        return None
    return _raise_message_alert(
        message.participant, message, message.content, hit, message.created_at
    )


# --- retrying failed alerts ------------------------------------------------------------------

# What raises the alert a stored row of each source is owed, given the row's id. Chat is built
# in; other apps (surveys) register theirs at start-up, so safety never imports them.
_OWED_ALERT_RESOLVERS: dict[str, Callable[[int], SafetyAlert | None]] = {
    "chat": lambda object_id: message_alert_owed(message_id=object_id),
}


def alert_source_register(source: str, resolver: Callable[[int], SafetyAlert | None]) -> None:
    """Name how to re-raise a failed alert of `source` (the resolver must be safe to rerun)."""
    _OWED_ALERT_RESOLVERS[source] = resolver


def safety_alert_retry_raise(*, source: str, object_id: int) -> SafetyAlert | None:
    """Raise the alert owed for a stored chat message or survey response, unless it exists
    (safe to run any number of times)."""
    resolver = _OWED_ALERT_RESOLVERS.get(source)
    if resolver is None:
        log.error("unknown safety alert source %r", source)
        return None
    return resolver(object_id)


def safety_alert_sweep(*, now: dt.datetime | None = None, days: int = 7) -> int:
    """Retry every recorded alert failure of the last `days` days; returns the alerts raised."""
    from studyplatform.core.models import AuditEvent

    now = now or timezone.now()
    owed = (
        AuditEvent.objects.filter(
            action=ALERT_FAILED_ACTION, created_at__gte=now - dt.timedelta(days=days)
        )
        .values_list("data", flat=True)
        .order_by("created_at")
    )
    raised = 0
    for source, object_id in dict.fromkeys((d.get("source"), d.get("id")) for d in owed):
        try:
            with transaction.atomic():
                if safety_alert_retry_raise(source=source, object_id=object_id) is not None:
                    raised += 1
        except Exception:
            log.exception("sweep: the %s alert for %s still fails", source, object_id)
    return raised


# --- the review queue ------------------------------------------------------------------------


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


def participant_alerts_scrub(*, participant: Participant) -> int:
    """Blank the excerpts and notes of a participant's alerts (withdrawal with deletion); the
    alerts themselves stay, as the record that the study responded. Returns the rows changed."""
    return SafetyAlert.objects.filter(participant=participant).update(excerpt="", notes="")


# --- crisis resources ------------------------------------------------------------------------


def crisis_resources_text(protocol: dict, language: str | None) -> str:
    """The protocol's crisis resources (Markdown) in `language`, else in English, else in any
    language given (core.i18n.localized, so `pt-br`, `pt-BR` and `pt_BR` find the same text).
    A plain string is the same text for every language."""
    resources = protocol.get("safety", {}).get("crisis_resources", "")
    if not isinstance(resources, str | Mapping):
        return ""
    return localized(resources, language)


def crisis_resources_html(protocol: dict, language: str | None) -> SafeString:
    """The crisis resources rendered to sanitised HTML, for chat and survey pages alike."""
    text = crisis_resources_text(protocol, language)
    return render_markdown(text) if text else SafeString("")
