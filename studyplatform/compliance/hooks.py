"""What the compliance app does when other apps' events happen (subscribed in ``ready()``)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from django.db import transaction
from django.utils import timezone

from studyplatform.core.events import (
    MessageStored,
    ParticipantContentDeletion,
    ParticipantDownloadRequested,
    ParticipantEnrolled,
    ParticipantHomeRequested,
    ParticipantTimezoneChanged,
    ParticipantWithdrew,
    ProtocolChanged,
    subscribe,
)

from . import services


def refresh_after_message(event: MessageStored) -> None:
    # The chat send path only enqueues, after commit: the work happens in a worker.
    from .tasks import compliance_refresh_task

    if services.requirement_for(event.participant.study) is None:
        # The study sets no usage requirement: the task would return at once. Not queueing it
        # saves every chat send a broker publish (~3 ms of the web process's CPU, the largest
        # single item of the send in the chat profile).
        return
    participant_id = event.participant.pk
    # robust: a broker outage must not fail a send whose message is already stored. A lost
    # refresh costs little: the next message queues another, and a nudge recomputes its period
    # from the messages before deciding.
    transaction.on_commit(lambda: compliance_refresh_task.delay(participant_id), robust=True)


def plan_nudges(event: ParticipantEnrolled) -> None:
    services.nudges_schedule(participant=event.participant, now=event.participant.enrolled_at)


def replan_nudges(event: ParticipantTimezoneChanged) -> None:
    services.nudges_resync(participant=event.participant, now=timezone.now())


def cancel_nudges(event: ParticipantWithdrew) -> None:
    services.nudges_cancel(participant=event.participant)


def delete_compliance(event: ParticipantContentDeletion) -> dict[str, int]:
    return services.participant_compliance_delete(participant=event.participant)


def compliance_download(event: ParticipantDownloadRequested) -> dict[str, list]:
    return {"usage_compliance": list(services.participant_compliance_rows(event.participant))}


def completion_code(url: str) -> str:
    """The completion code a panel's completion URL carries (``cc``, as Prolific's do)."""
    values = parse_qs(urlsplit(url).query).get("cc") or [""]
    return values[0]


def home_requirements(event: ParticipantHomeRequested) -> dict[str, object]:
    """The home page's usage section: progress, today's nudge and the completion step."""
    participant = event.participant
    progress = services.participant_progress(participant)
    if progress is None:
        return {}
    url = (participant.study.protocol["study"].get("recruitment") or {}).get("completion_url")
    return {
        "requirement_progress": progress,
        "requirement_nudges": services.nudges_in_app(participant),
        # The recruitment site's completion link (as on the welcome page); panels such as
        # Prolific carry the completion code in it (?cc=...), shown for typing in by hand.
        "requirement_completion_url": url or "",
        "requirement_completion_code": completion_code(url or ""),
    }


def resync_nudges(event: ProtocolChanged) -> None:
    from .tasks import nudges_resync_task

    nudges_resync_task.delay(event.study.pk)


def subscribe_all() -> None:
    subscribe(MessageStored, refresh_after_message)
    subscribe(ParticipantEnrolled, plan_nudges)
    subscribe(ParticipantTimezoneChanged, replan_nudges)
    subscribe(ParticipantWithdrew, cancel_nudges)
    subscribe(ParticipantContentDeletion, delete_compliance)
    subscribe(ParticipantDownloadRequested, compliance_download)
    subscribe(ParticipantHomeRequested, home_requirements)
    subscribe(ProtocolChanged, resync_nudges)
