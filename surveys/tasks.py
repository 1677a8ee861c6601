"""Survey background work: the beat tick and invitation/reminder notifications."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from studyplatform.core.links import site_url
from studyplatform.core.tasks import TRANSIENT_IO_RETRY

from .models import Invitation

log = logging.getLogger(__name__)


@shared_task(name="surveys.tasks.schedule_tick", ignore_result=True)
def schedule_tick() -> None:
    from .engine import schedule_tick as tick

    report = tick()
    log.info("schedule tick: %s", {k: v for k, v in vars(report).items() if k != "notify"})


@shared_task(name="surveys.tasks.send_notifications", ignore_result=True, **TRANSIENT_IO_RETRY)
def send_notifications(kind: str, invitation_ids: list[int]) -> int:
    """Email invitations/reminders with a single-use sign-in link to the survey. Participants
    without email see the invitation on their home page (in-app) when they return."""
    from studyplatform.participants.models import Identity
    from studyplatform.participants.services import signin_link_create

    invitations = Invitation.objects.filter(
        id__in=invitation_ids, status__in=Invitation.OPEN
    ).select_related("participant__study")
    emails = {
        i.participant_id: i.email
        for i in Identity.objects.filter(participant_id__in=[v.participant_id for v in invitations])
    }
    messages = []
    for invitation in invitations:
        address = emails.get(invitation.participant_id)
        if not address:
            continue
        participant = invitation.participant
        token = signin_link_create(
            participant=participant,
            next_path=reverse("surveys:start", kwargs={"invitation_id": invitation.pk}),
        )
        with translation.override(participant.language):
            subject = (
                _("Reminder: a short questionnaire for %(title)s")
                if kind == "reminder"
                else _("A short questionnaire for %(title)s")
            ) % {"title": participant.study.title_in()}
            body = render_to_string(
                "surveys/email/invitation.txt",
                {
                    "url": site_url("participants:signin_token", kwargs={"token": token}),
                    "invitation": invitation,
                    "study": participant.study,
                    "reminder": kind == "reminder",
                },
            )
        messages.append(EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [address]))
    if messages:
        get_connection().send_messages(messages)
    return len(messages)


@shared_task(name="surveys.tasks.resync_schedule", ignore_result=True)
def resync_schedule(study_id: int) -> None:
    from studyplatform.studies.models import Study

    from .engine import schedule_resync

    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        log.info("study %s is gone", study_id)
        return
    schedule_resync(study)
