"""Daily conversation tasks: which task a participant sees today, the log of what was shown,
the conversation a participant opens from it and the first message sent after it.

The rule that picks a task is protocol semantics (studyplatform.studies.protocol.tasks); the
study day is the survey schedule's participant-local day (schedule_rules.local_date_of on the
same ParticipantContext the schedule uses), so "day 3" of a task and of a survey are the same
day. That is why tasks live here: chat sits below surveys and reaches these functions through
the ParticipantChatRequested and MessageStored events.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from studyplatform.chat.models import Conversation, Message
from studyplatform.chat.services import conversation_create
from studyplatform.core.i18n import localized
from studyplatform.participants.models import Participant
from studyplatform.studies.protocol.tasks import task_for_day, task_list_for_arm

from . import engine
from . import schedule_rules as rules
from .models import TaskAssignment


class TaskError(ValueError):
    """No conversation can be opened from today's task (`code` says why)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class StudyDay:
    number: int  # 0 = the enrollment day
    local_date: dt.date


def study_day_of(participant: Participant, at: dt.datetime) -> StudyDay | None:
    """The participant's study day at `at`, or None before enrollment or after the study's
    last day (the same local calendar and end as the survey schedule)."""
    study = participant.study
    ctx = engine.context_for(participant, study.duration_days, study.allocation_seed)
    if at < ctx.enrolled_at or at >= ctx.study_end:
        return None
    day0 = rules.local_date_of(ctx, ctx.enrolled_at)
    today = rules.local_date_of(ctx, at)
    return StudyDay(number=(today - day0).days, local_date=today)


def task_show(*, participant: Participant, now: dt.datetime | None = None) -> TaskAssignment | None:
    """Today's task for the participant, recording the first time it is shown; None when
    their arm has no task list, the list has nothing for today, or they are not active."""
    now = now or timezone.now()
    if participant.status != Participant.Status.ACTIVE:
        return None
    day = study_day_of(participant, now)
    if day is None:
        return None
    existing = TaskAssignment.objects.filter(participant=participant, study_day=day.number).first()
    if existing is not None:
        return existing
    study = participant.study
    allocation = getattr(participant, "allocation", None)
    if allocation is None:
        return None
    task_list = task_list_for_arm(study.protocol, allocation.arm.key)
    if task_list is None:
        return None
    task = task_for_day(
        task_list,
        study_day=day.number,
        local_date=day.local_date,
        # Per participant and list: two participants get different orders, the same
        # participant the same order on every page view and after every restart.
        seed=f"{study.allocation_seed}:{participant.code}:{task_list['key']}",
    )
    if task is None:
        return None
    # get_or_create retries the read when a concurrent request inserted the row first.
    assignment, _ = TaskAssignment.objects.get_or_create(
        participant=participant,
        study_day=day.number,
        defaults={
            "study": study,
            "local_date": day.local_date,
            "list_key": task.list_key,
            "task_key": task.key,
            "text": task.text,
            "open_new_conversation": task.open_new_conversation,
            "protocol_version": study.current_version,
            "shown_at": now,
        },
    )
    return assignment


def task_text(assignment: TaskAssignment, language: str) -> str:
    return localized(assignment.text, language)


def task_conversation_start(
    *, participant: Participant, now: dt.datetime | None = None
) -> Conversation:
    """Open a new conversation about today's task (or return the one already opened from it,
    so a second click does not open a second one). Raises TaskError when today has no task or
    its list does not offer a conversation."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = task_show(participant=participant, now=now)
        if assignment is None:
            raise TaskError("no_task")
        if not assignment.open_new_conversation:
            raise TaskError("no_conversation")
        # Lock the row: two clicks at once must not open two conversations.
        assignment = TaskAssignment.objects.select_for_update().get(pk=assignment.pk)
        if assignment.conversation_id is not None:
            existing = Conversation.objects.filter(pk=assignment.conversation_id).first()
            if existing is not None:
                return existing
        conversation = conversation_create(
            participant=participant,
            now=now,
            task_text=task_text(assignment, participant.language),
        )
        assignment.conversation = conversation
        assignment.conversation_started_at = now
        assignment.save(update_fields=["conversation", "conversation_started_at"])
    return conversation


def task_message_record(*, participant: Participant, message: Message | None) -> bool:
    """Log `message` as the first message after the day's task was shown, if it is; True when
    it was. One conditional update, so only the first message of the day is recorded."""
    at = message.created_at if message is not None else timezone.now()
    day = study_day_of(participant, at)
    if day is None:
        return False
    updated = TaskAssignment.objects.filter(
        participant=participant,
        study_day=day.number,
        shown_at__lte=at,
        first_message_at__isnull=True,
    ).update(first_message=message, first_message_at=at)
    return updated == 1
