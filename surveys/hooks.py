"""What the survey engine does when other apps' events happen.

Each handler takes a ``studyplatform.core.events`` event; ``SurveysConfig.ready()`` subscribes
them (the services publishing these events sit in lower apps and cannot import surveys).
"""

from __future__ import annotations

import logging

from django.db import transaction

from studyplatform.core.events import (
    MessageStored,
    ParticipantChatRequested,
    ParticipantContentDeletion,
    ParticipantDownloadRequested,
    ParticipantEnrolled,
    ParticipantHomeRequested,
    ParticipantTimezoneChanged,
    ParticipantWithdrew,
    ProtocolChanged,
    subscribe,
)
from studyplatform.safety.services import alert_source_register
from studyplatform.studies.protocol.validate import InstrumentLibrary, instrument_library_register

from . import daily_tasks, engine, instruments, services
from .models import Invitation, Response, TaskAssignment

log = logging.getLogger(__name__)


def schedule_new_participant(event: ParticipantEnrolled) -> None:
    participant = event.participant
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


def reschedule_in_new_zone(event: ParticipantTimezoneChanged) -> None:
    from django.utils import timezone

    engine.reschedule_participant(event.participant, now=timezone.now())


def stop_invitations(event: ParticipantWithdrew) -> None:
    engine.on_withdrawal(event.participant)


def delete_responses(event: ParticipantContentDeletion) -> dict[str, int]:
    responses = Response.objects.filter(participant=event.participant)
    count = responses.count()
    # Corrections point at what they supersede: delete newest first.
    for response in responses.order_by("-started_at", "-pk"):
        response.delete()
    return {"survey_responses": count}


def survey_download(event: ParticipantDownloadRequested) -> dict[str, list]:
    participant = event.participant
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


def home_due(event: ParticipantHomeRequested) -> dict[str, object]:
    """The questionnaires open now, for the participant's home page ("What's due")."""
    return {"due": engine.due_for(event.participant)}


def reschedule(event: ProtocolChanged) -> None:
    from .tasks import resync_schedule

    resync_schedule.delay(event.study.pk)


def after_message(event: MessageStored) -> None:
    participant, version_id = event.participant, event.current_version_id
    transaction.on_commit(lambda: engine.on_chat_message(participant, version_id=version_id))


def _task_card(participant) -> dict[str, object]:
    """Today's conversation task as the home and chat pages show it (None: no task today)."""
    from django.utils import translation

    assignment = daily_tasks.task_show(participant=participant)
    if assignment is None:
        return {"task": None}
    return {
        "task": {
            "text": daily_tasks.task_text(
                assignment, translation.get_language() or participant.language
            ),
            "study_day": assignment.study_day,
            "can_start": assignment.open_new_conversation,
            "conversation_id": assignment.conversation_id,
        }
    }


def home_task(event: ParticipantHomeRequested) -> dict[str, object]:
    return _task_card(event.participant)


def chat_task(event: ParticipantChatRequested) -> dict[str, object]:
    return _task_card(event.participant)


def task_after_message(event: MessageStored) -> None:
    """The first study-chat message after the day's task was shown ("chatted after it")."""
    if event.participant.study.protocol.get("tasks"):
        daily_tasks.task_message_record(participant=event.participant, message=event.message)


def delete_task_log(event: ParticipantContentDeletion) -> dict[str, int]:
    count, _ = TaskAssignment.objects.filter(participant=event.participant).delete()
    return {"task_assignments": count}


def task_download(event: ParticipantDownloadRequested) -> dict[str, list]:
    rows = [
        {
            "study_day": a.study_day,
            "task_list": a.list_key,
            "task": a.task_key,
            "text": a.text,
            "shown_at": a.shown_at.isoformat(),
            "conversation_started_at": a.conversation_started_at.isoformat()
            if a.conversation_started_at
            else None,
            "first_message_at": a.first_message_at.isoformat() if a.first_message_at else None,
        }
        for a in TaskAssignment.objects.filter(participant=event.participant).order_by("study_day")
    ]
    return {"conversation_tasks": rows}


def subscribe_all() -> None:
    """Called from ``SurveysConfig.ready()``."""
    subscribe(ParticipantEnrolled, schedule_new_participant)
    subscribe(ParticipantTimezoneChanged, reschedule_in_new_zone)
    subscribe(ParticipantWithdrew, stop_invitations)
    subscribe(ParticipantContentDeletion, delete_responses)
    subscribe(ParticipantDownloadRequested, survey_download)
    subscribe(ParticipantHomeRequested, home_due)
    subscribe(ProtocolChanged, reschedule)
    subscribe(MessageStored, after_message)
    # Daily conversation tasks (daily_tasks.py).
    subscribe(ParticipantHomeRequested, home_task)
    subscribe(ParticipantChatRequested, chat_task)
    subscribe(MessageStored, task_after_message)
    subscribe(ParticipantContentDeletion, delete_task_log)
    subscribe(ParticipantDownloadRequested, task_download)
    # A survey alert that failed to be raised is retried by the safety app (task and beat
    # sweep), which does not import surveys: it asks this resolver for the alert a response owes.
    alert_source_register(
        "survey", lambda response_id: services.survey_alert_for_response(response_id=response_id)
    )
    # The protocol validator (studies, below surveys) checks instrument keys, items and scores
    # against this library.
    instrument_library_register(
        InstrumentLibrary(
            shipped=instruments.instrument_index, validate=instruments.validate_instrument_dict
        )
    )
