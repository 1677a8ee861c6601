"""The daily safety digest: one email per study with unresolved alerts, to the protocol's alert
recipients, so an alert nobody has picked up does not rest on a single notification email.

The email holds counts and ages only, never excerpts: reviewers read those in the platform,
where access is checked and audited.
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from studyplatform.studies.models import Study

from .models import SafetyAlert
from .selectors import DigestSummary, digest_summary

log = logging.getLogger(__name__)


def _age(delta: dt.timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h"


def digest_body(study: Study, summary: DigestSummary, now: dt.datetime) -> str:
    lines = [
        f"Unresolved safety alerts in study '{study.title}' ({study.slug}) "
        f"on {now:%Y-%m-%d %H:%M} UTC:",
        "",
        "  severity   open   acknowledged",
    ]
    for severity in ("high", "medium", "low"):
        lines.append(
            f"  {severity:<9}{summary.open_by_severity.get(severity, 0):>5}"
            f"{summary.acknowledged_by_severity.get(severity, 0):>15}"
        )
    lines += [
        "",
        f"Overdue (open past the protocol's response time): {summary.overdue}",
    ]
    if summary.oldest_created_at is not None:
        lines.append(f"Oldest unresolved alert: {_age(now - summary.oldest_created_at)} old")
    lines += ["", f"Review them here: {settings.SITE_URL}/api/studies/{study.slug}/safety-alerts/"]
    return "\n".join(lines) + "\n"


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
    name="studyplatform.chat.digest_tasks.safety_digest",
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
