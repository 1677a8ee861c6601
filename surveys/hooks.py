"""What the survey engine does when other apps' events happen (registered in apps.ready)."""

from __future__ import annotations

import logging

from django.db import transaction

from studyplatform.chat.services import register_message_hook
from studyplatform.participants.services import (
    register_content_deleter,
    register_download_section,
    register_enrollment_hook,
    register_timezone_hook,
    register_withdrawal_hook,
)
from studyplatform.safety.services import alert_source_register
from studyplatform.studies.services import register_protocol_change_hook

from . import engine, services
from .models import Invitation, Response

log = logging.getLogger(__name__)


@register_enrollment_hook
def schedule_new_participant(participant) -> None:
    engine.schedule_init(participant)
    # The baseline survey opens at enrollment: create and send it as soon as the consent
    # commits, so the participant's first page shows it due instead of "nothing due" until the
    # next tick. After commit, because the invitation rows and the email must follow a consent
    # that really happened, and so a failure here cannot undo the enrollment.
    participant_id = participant.pk
    transaction.on_commit(lambda: _schedule_now(participant_id))


def _schedule_now(participant_id: int) -> None:
    try:
        engine.schedule_participant_now(participant_id)
    except Exception:
        # The enrollment has committed and must stand: the next tick (a minute at most) makes
        # and sends this participant's due invitations, exactly once.
        log.exception(
            "could not schedule participant %s at enrollment; the next tick will", participant_id
        )


@register_timezone_hook
def reschedule_in_new_zone(participant) -> None:
    from django.utils import timezone

    engine.reschedule_participant(participant, now=timezone.now())


@register_withdrawal_hook
def stop_invitations(participant) -> None:
    engine.on_withdrawal(participant)


@register_content_deleter
def delete_responses(participant) -> dict[str, int]:
    responses = Response.objects.filter(participant=participant)
    count = responses.count()
    # Corrections point at what they supersede: delete newest first.
    for response in responses.order_by("-started_at", "-pk"):
        response.delete()
    return {"survey_responses": count}


@register_download_section
def survey_download(participant) -> dict[str, list]:
    invitations = [
        {
            "invitation": i.pk,
            "survey": i.entry_key,
            "occurrence": i.occurrence_key,
            "wave": i.wave,
            "status": i.status,
            "opens_at": i.opens_at.isoformat(),
            "closes_at": i.closes_at.isoformat(),
            "completed_at": i.completed_at.isoformat() if i.completed_at else None,
        }
        for i in Invitation.objects.filter(participant=participant).order_by("opens_at")
    ]
    responses = [
        {
            "invitation": r.invitation_id,
            "instrument": r.instrument_key,
            "status": r.status,
            "answers": r.answers,
            "scores": r.scores,
            "submitted_at": r.submitted_at.isoformat() if r.submitted_at else None,
        }
        for r in Response.objects.filter(participant=participant).order_by("started_at")
    ]
    return {"survey_invitations": invitations, "survey_responses": responses}


@register_protocol_change_hook
def reschedule(study, version) -> None:
    from .tasks import resync_schedule

    resync_schedule.delay(study.pk)


@register_message_hook
def after_message(participant) -> None:
    transaction.on_commit(lambda: engine.on_chat_message(participant))


# A survey alert that failed to be raised is retried by the safety app (task and beat sweep),
# which does not import surveys: it asks this resolver for the alert a response is owed.
alert_source_register(
    "survey", lambda response_id: services.survey_alert_for_response(response_id=response_id)
)
