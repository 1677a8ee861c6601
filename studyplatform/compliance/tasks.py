"""Compliance background work: per-participant refresh after a message, the nudge tick, and the
nudge emails (the survey invitations' mail machinery: a single-use sign-in link, the
participant's language, sent through Django's mail connection)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from studyplatform.core.i18n import localized
from studyplatform.core.links import site_url
from studyplatform.core.tasks import TRANSIENT_IO_RETRY

log = logging.getLogger(__name__)


@shared_task(name="studyplatform.compliance.tasks.compliance_refresh", ignore_result=True)
def compliance_refresh_task(participant_id: int) -> None:
    from studyplatform.participants.models import Participant

    from .services import compliance_refresh, requirement_for

    participant = Participant.objects.filter(pk=participant_id).select_related("study").first()
    if participant is None:
        log.info("participant %s is gone", participant_id)
        return
    if requirement_for(participant.study) is None:
        return  # the study sets no requirement: nothing to keep
    compliance_refresh(participant=participant)


@shared_task(name="studyplatform.compliance.tasks.nudge_tick", ignore_result=True)
def nudge_tick() -> None:
    from .services import nudge_tick as tick

    log.info("nudge tick: %s", tick())


@shared_task(name="studyplatform.compliance.tasks.nudges_resync", ignore_result=True)
def nudges_resync_task(study_id: int) -> None:
    from studyplatform.studies.models import Study

    from .services import nudges_resync_study

    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        log.info("study %s is gone", study_id)
        return
    nudges_resync_study(study=study)


@shared_task(
    name="studyplatform.compliance.tasks.send_nudge_emails",
    ignore_result=True,
    **TRANSIENT_IO_RETRY,
)
def send_nudge_emails(nudge_ids: list[int]) -> int:
    """Email each sent nudge once to participants who gave an email address and are active."""
    from studyplatform.participants.models import Identity, Participant
    from studyplatform.participants.services import signin_link_create

    from .models import UsageNudge
    from .services import requirement_for

    sent = 0
    for nudge in UsageNudge.objects.filter(
        id__in=nudge_ids,
        status=UsageNudge.Status.SENT,
        emailed_at__isnull=True,
        participant__status=Participant.Status.ACTIVE,
    ).select_related("participant__study"):
        participant = nudge.participant
        identity = Identity.objects.filter(participant=participant).first()
        if identity is None or not identity.email:
            continue
        # Claimed before sending, so a retry or a second worker does not send it again.
        now = timezone.now()
        if not UsageNudge.objects.filter(pk=nudge.pk, emailed_at__isnull=True).update(
            emailed_at=now
        ):
            continue
        requirement = requirement_for(participant.study)
        token = signin_link_create(participant=participant, next_path=reverse("participants:home"))
        with translation.override(participant.language):
            custom = localized(requirement.nudge_text, participant.language) if requirement else ""
            subject = _("A reminder from %(title)s") % {"title": participant.study.title}
            body = render_to_string(
                "compliance/email/nudge.txt",
                {
                    "url": site_url("participants:signin_token", kwargs={"token": token}),
                    "study": participant.study,
                    "nudge": nudge,
                    "custom": custom,
                    "weekly": bool(requirement and requirement.weekly),
                },
            )
        try:
            get_connection().send_messages(
                [EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [identity.email])]
            )
        except Exception:
            UsageNudge.objects.filter(pk=nudge.pk).update(emailed_at=None)  # let a retry send it
            raise
        sent += 1
    return sent
