"""Survey reads for participant pages and the researcher API: one query per list (no N+1)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from studyplatform.participants.models import Participant
from studyplatform.studies.models import Study

from .models import Invitation, Response, TaskAssignment

# Invitations that actually reached the participant. Scheduled/sending rows have not been sent
# yet, and skipped/cancelled ones never will be, so none of those count as "invited".
INVITED = (
    Invitation.Status.SENT,
    Invitation.Status.OPENED,
    Invitation.Status.STARTED,
    Invitation.Status.COMPLETED,
    Invitation.Status.EXPIRED,
)


def invitation_for_participant(participant: Participant, invitation_id: int) -> Invitation:
    """The participant's own invitation; anyone else's id is a 404 (existence not revealed)."""
    return get_object_or_404(
        Invitation.objects.select_related("protocol_version", "study"),
        pk=invitation_id,
        participant=participant,
    )


def responses_by_instrument(invitation: Invitation) -> dict[str, Response]:
    """The latest response per instrument of one invitation."""
    latest: dict[str, Response] = {}
    for response in invitation.responses.order_by("started_at", "pk"):
        latest[response.instrument_key] = response
    return latest


def invitations_for_study(
    study: Study,
    *,
    participant: str = "",
    status: str = "",
    entry: str = "",
    wave: str = "",
) -> QuerySet[Invitation]:
    qs = (
        Invitation.objects.filter(study=study)
        .select_related("participant", "protocol_version")
        .order_by("opens_at", "pk")
    )
    if participant:
        qs = qs.filter(participant__code=participant)
    if status:
        qs = qs.filter(status=status)
    if entry:
        qs = qs.filter(entry_key=entry)
    if wave:
        # isdigit() alone admits "²" (int() refuses it) and 5,000-digit numbers.
        ok = wave.isascii() and wave.isdigit() and len(wave) <= 9
        qs = qs.filter(wave=int(wave)) if ok else qs.none()
    return qs


def responses_for_study(
    study: Study, *, instrument: str = "", participant: str = ""
) -> QuerySet[Response]:
    """Submitted responses that are current (a corrected response is replaced by its
    correction, which names it in `supersedes`)."""
    qs = (
        Response.objects.filter(
            invitation__study=study,
            status=Response.Status.SUBMITTED,
            superseded_by__isnull=True,
        )
        .select_related("invitation", "participant", "protocol_version")
        .order_by("submitted_at", "pk")
    )
    if instrument:
        qs = qs.filter(instrument_key=instrument)
    if participant:
        qs = qs.filter(participant__code=participant)
    return qs


def _rate(completed: int, invited: int) -> float | None:
    return round(completed / invited, 4) if invited else None


def compliance_for_study(study: Study) -> dict[str, list[dict[str, Any]]]:
    """Completion per participant and per entry + wave. `rate` = completed / invited, where
    invited counts invitations that were sent (open, completed or expired); null when none."""
    counts = {
        "invited": Count("id", filter=Q(status__in=INVITED)),
        "completed": Count("id", filter=Q(status=Invitation.Status.COMPLETED)),
        "expired": Count("id", filter=Q(status=Invitation.Status.EXPIRED)),
    }
    base = Invitation.objects.filter(study=study).order_by()
    per_participant = [
        {
            "participant": row["participant__code"],
            "invited": row["invited"],
            "completed": row["completed"],
            "expired": row["expired"],
            "rate": _rate(row["completed"], row["invited"]),
        }
        for row in base.values("participant__code").annotate(**counts).order_by("participant__code")
    ]
    per_wave = [
        {
            "entry": row["entry_key"],
            "wave": row["wave"],
            "invited": row["invited"],
            "completed": row["completed"],
            "expired": row["expired"],
            "rate": _rate(row["completed"], row["invited"]),
        }
        for row in base.values("entry_key", "wave").annotate(**counts).order_by("entry_key", "wave")
    ]
    return {"participants": per_participant, "waves": per_wave}


def task_day_counts(study: Study) -> list[dict[str, int]]:
    """Per study day: how many participants (pilots left out) were shown their daily
    conversation task, opened a conversation from it, and chatted after seeing it. One query;
    no arm, so any role that follows compliance may see it."""
    rows = (
        TaskAssignment.objects.filter(study=study, participant__is_pilot=False)
        .values("study_day")
        .annotate(
            shown=Count("id"),
            started=Count("id", filter=Q(conversation_started_at__isnull=False)),
            chatted=Count("id", filter=Q(first_message_at__isnull=False)),
        )
        .order_by("study_day")
    )
    return [dict(r) for r in rows]
