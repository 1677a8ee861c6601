"""Chat background work: notifying safety reviewers."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail

from . import digest_tasks  # noqa: F401 - workers discover tasks through this module
from .models import SafetyAlert

log = logging.getLogger(__name__)


@shared_task(
    name="studyplatform.chat.tasks.notify_safety_alert",
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def notify_safety_alert(alert_id: int) -> None:
    """Email the protocol's alert recipients. The email holds no excerpt: reviewers read it in
    the platform, where access is checked and audited."""
    alert = SafetyAlert.objects.select_related("study", "participant").filter(pk=alert_id).first()
    if alert is None:
        log.info("alert %s no longer exists", alert_id)
        return
    recipients = alert.study.protocol.get("safety", {}).get("alert_recipients", [])
    if not recipients:
        return
    subject = (
        f"[{alert.study.slug}] {alert.severity.upper()} safety alert for {alert.participant.code}"
    )
    body = (
        f"A {alert.severity} safety alert ({alert.category}, from {alert.source}) was raised for "
        f"participant {alert.participant.code} in study '{alert.study.title}'.\n\n"
        f"Respond by {alert.due_at:%Y-%m-%d %H:%M} UTC (the protocol's response time).\n"
        f"Review it here: {settings.SITE_URL}/api/studies/{alert.study.slug}/safety-alerts/"
        f"{alert.pk}/\n"
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


@shared_task(
    name="studyplatform.chat.tasks.moderate_message",
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def moderate_message(message_id: int) -> None:
    import openai

    from .models import Message
    from .moderation import moderate_message as moderate

    message = Message.objects.select_related("participant__study").filter(pk=message_id).first()
    if message is None or not message.content:
        log.info("message %s gone or empty; nothing to moderate", message_id)
        return
    try:
        moderate(message)
    except openai.APIConnectionError as exc:  # transient: retried by Celery
        raise OSError(str(exc)) from exc


@shared_task(
    name="studyplatform.chat.tasks.safety_alert_retry",
    ignore_result=True,
    # Any failure is retried: what failed while the participant waited may be a database
    # hiccup or a configuration fixed since. The beat sweep picks up what retries give up on.
    autoretry_for=(Exception,),
    retry_backoff=30,
    retry_backoff_max=1800,
    max_retries=8,
)
def safety_alert_retry(source: str, object_id: int) -> None:
    """Raise the alert a stored chat message or survey response is owed (a no-op when it
    exists or the row is gone)."""
    from .safety_alerts import safety_alert_retry_raise

    safety_alert_retry_raise(source=source, object_id=object_id)


@shared_task(name="studyplatform.chat.tasks.safety_alert_sweep", ignore_result=True)
def safety_alert_sweep() -> None:
    """Retry every recorded safety-alert failure of the last days that still has no alert."""
    from .safety_alerts import safety_alert_sweep as sweep

    raised = sweep()
    if raised:
        log.warning("safety sweep raised %d alert(s) that had failed", raised)


@shared_task(name="studyplatform.chat.tasks.stale_reply_sweep", ignore_result=True)
def stale_reply_sweep() -> int:
    """Record replies abandoned in `streaming` as interrupted on our side (beat.py)."""
    from .services import stale_replies_finish

    return stale_replies_finish()
