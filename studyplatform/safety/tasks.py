"""Safety background work: the notification email for each new alert, the moderation screen,
retrying alerts that failed to be raised (per alert and as a beat sweep), and the daily digest.

Emails hold counts, severities and codes, never excerpts: reviewers read those in the console,
where access is checked and audited. Their links point at the console's safety pages.
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from studyplatform.core.tasks import TRANSIENT_IO_RETRY
from studyplatform.studies.models import Study

from .models import SafetyAlert
from .selectors import DigestSummary, digest_summary

log = logging.getLogger(__name__)


def _absolute(path: str) -> str:
    """An absolute link for an email (SITE_URL is the public base URL, no trailing slash)."""
    return f"{settings.SITE_URL}{path}"


# --- one email per alert ---------------------------------------------------------------------


def alert_email_body(alert: SafetyAlert) -> str:
    review_url = _absolute(
        reverse(
            "console:monitor_safety_alert",
            kwargs={"slug": alert.study.slug, "alert_id": alert.pk},
        )
    )
    return render_to_string("safety/alert_email.txt", {"alert": alert, "review_url": review_url})


@shared_task(
    name="studyplatform.safety.tasks.notify_safety_alert", ignore_result=True, **TRANSIENT_IO_RETRY
)
def notify_safety_alert(alert_id: int) -> None:
    """Email the protocol's alert recipients."""
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
    send_mail(subject, alert_email_body(alert), settings.DEFAULT_FROM_EMAIL, recipients)


# --- moderation ------------------------------------------------------------------------------


@shared_task(
    name="studyplatform.safety.tasks.moderate_message", ignore_result=True, **TRANSIENT_IO_RETRY
)
def moderate_message(message_id: int) -> None:
    import openai

    from .moderation import moderate_message as moderate
    from .sources import message_source

    message = message_source().participant_message(message_id)
    if message is None or not message.content:
        log.info("message %s gone or empty; nothing to moderate", message_id)
        return
    try:
        moderate(message)
    except openai.APIConnectionError as exc:  # transient: retried by Celery
        raise OSError(str(exc)) from exc


# --- alerts that failed to be raised ---------------------------------------------------------


# Any failure is retried: what failed while the participant waited may be a database hiccup
# or a configuration fixed since. The beat sweep picks up what retries give up on.
ALERT_RETRY = {
    "autoretry_for": (Exception,),
    "retry_backoff": 30,
    "retry_backoff_max": 1800,
    "max_retries": 8,
}


@shared_task(
    name="studyplatform.safety.tasks.safety_alert_retry", ignore_result=True, **ALERT_RETRY
)
def safety_alert_retry(source: str, object_id: int) -> None:
    """Raise the alert a stored chat message or survey response is owed (a no-op when it
    exists or the row is gone)."""
    from .services import safety_alert_retry_raise

    safety_alert_retry_raise(source=source, object_id=object_id)


@shared_task(name="studyplatform.safety.tasks.safety_alert_sweep", ignore_result=True)
def safety_alert_sweep() -> None:
    """Retry every recorded safety-alert failure of the last days that still has no alert."""
    from .services import safety_alert_sweep as sweep

    raised = sweep()
    if raised:
        log.warning("safety sweep raised %d alert(s) that had failed", raised)


# Names these tasks had while they lived in the chat app. A notification or a retry (which may
# wait up to 30 minutes between attempts) queued before an upgrade still arrives under the old
# name; these keep it from being dropped as unregistered. Remove them one release after the
# move, once no queue can hold an old-named message.
def _old_name(old: str, task, retry: dict) -> None:
    """Register `task` also under its old chat-app name, with the same retry policy."""

    def run(*args) -> None:
        task(*args)

    shared_task(name=old, ignore_result=True, **retry)(run)


_old_name("studyplatform.chat.tasks.notify_safety_alert", notify_safety_alert, TRANSIENT_IO_RETRY)
_old_name("studyplatform.chat.tasks.safety_alert_retry", safety_alert_retry, ALERT_RETRY)
_old_name("studyplatform.chat.tasks.moderate_message", moderate_message, TRANSIENT_IO_RETRY)


# --- the daily digest ------------------------------------------------------------------------
# One email per study with unresolved alerts, so an alert nobody has picked up does not rest on
# a single notification email.


def _age(delta: dt.timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h"


def digest_body(study: Study, summary: DigestSummary, now: dt.datetime) -> str:
    rows = [
        f"  {severity:<9}{summary.open_by_severity.get(severity, 0):>5}"
        f"{summary.acknowledged_by_severity.get(severity, 0):>15}"
        for severity in ("high", "medium", "low")
    ]
    oldest = summary.oldest_created_at
    context = {
        "study": study,
        "now": now,
        "rows": rows,
        "summary": summary,
        "oldest_age": _age(now - oldest) if oldest is not None else "",
        "review_url": _absolute(reverse("console:monitor_safety", kwargs={"slug": study.slug})),
    }
    return render_to_string("safety/digest_email.txt", context)


def safety_digest_send(*, study: Study, now: dt.datetime) -> bool:
    """Email one study's digest. False (nothing sent) without unresolved alerts or recipients."""
    recipients = study.protocol.get("safety", {}).get("alert_recipients", [])
    if not recipients:
        return False
    alerts = SafetyAlert.objects.filter(study=study).exclude(status=SafetyAlert.Status.RESOLVED)
    summary = digest_summary(alerts.only("status", "severity", "created_at", "due_at"), now=now)
    if summary.unresolved == 0:
        return False  # a daily "nothing to report" would teach people to ignore the digest
    subject = (
        f"[{study.slug}] Safety digest: {summary.unresolved} unresolved, {summary.overdue} overdue"
    )
    send_mail(subject, digest_body(study, summary, now), settings.DEFAULT_FROM_EMAIL, recipients)
    return True


@shared_task(
    name="studyplatform.safety.tasks.safety_digest",
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=3,
)
def safety_digest() -> int:
    """Send each study's digest; returns how many emails were sent.

    Not deduplicated: a second run on the same day sends a second, identical digest, which is
    harmless (beat's `expires` already drops stale ticks after an outage).
    """
    now = timezone.now()
    study_ids = (
        SafetyAlert.objects.exclude(status=SafetyAlert.Status.RESOLVED)
        .values_list("study_id", flat=True)
        .distinct()
    )
    sent = 0
    for study in Study.objects.filter(pk__in=study_ids).select_related("current_version"):
        sent += safety_digest_send(study=study, now=now)
    log.info("safety digest: %s emails sent", sent)
    return sent
