"""Raising safety alerts (chat messages, flagged survey answers) and notifying reviewers.

The safety path must never be broken by configuration or by a failure while raising an alert:
the participant's message or answer is stored and crisis resources are shown whatever happens
here. `safety_alert_raise_guarded` runs the raise in a savepoint; a failure is logged, recorded
as a `safety.alert_failed` audit event and retried by a Celery task, and the beat sweep
(`safety_alert_sweep`) retries recorded failures that still have no alert.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from studyplatform.core.audit import audit_record
from studyplatform.participants.models import Participant
from studyplatform.studies.protocol.runtime import response_time_hours

from .models import Message, SafetyAlert

EXCERPT_CHARS = 280
ALERT_FAILED_ACTION = "safety.alert_failed"

log = logging.getLogger(__name__)


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


def safety_alert_retry_raise(*, source: str, object_id: int) -> SafetyAlert | None:
    """Raise the alert owed for a stored chat message or survey response, unless it exists
    (safe to run any number of times)."""
    if source == "chat":
        from .services import chat_alert_for_message

        return chat_alert_for_message(message_id=object_id)
    if source == "survey":
        from surveys.services import survey_alert_for_response

        return survey_alert_for_response(response_id=object_id)
    log.error("unknown safety alert source %r", source)
    return None


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
