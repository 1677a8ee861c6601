"""Answering surveys: opening an invitation, saving partial answers, submitting (scored
exactly as published), corrections, and safety flags from answers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from studyplatform.core.audit import audit_record
from studyplatform.safety import selectors as safety_selectors
from studyplatform.safety import services as safety_services

from .instruments import Instrument, get_instrument, load_instrument_dict
from .models import Invitation, Response
from .scoring import AnswerError, score_answers


class SurveyError(ValueError):
    def __init__(self, code: str, errors: dict[str, str] | None = None):
        super().__init__(code)
        self.code = code
        self.errors = errors or {}


def instrument_for(invitation: Invitation, key: str) -> Instrument:
    """A shipped instrument, or a custom one defined in the invitation's protocol version."""
    custom = {
        i["key"]: i
        for i in invitation.protocol_version.content.get("surveys", {}).get("instruments", [])
    }
    if key in custom:
        return load_instrument_dict(custom[key])
    return get_instrument(key)


def invitation_open(*, invitation: Invitation, now: dt.datetime | None = None) -> Invitation:
    now = now or timezone.now()
    if not invitation.is_open(now):
        raise SurveyError("closed")
    if invitation.status == Invitation.Status.SENT:
        Invitation.objects.filter(pk=invitation.pk, status=Invitation.Status.SENT).update(
            status=Invitation.Status.OPENED, opened_at=now
        )
        invitation.refresh_from_db()
    return invitation


def _draft(invitation: Invitation, key: str, instrument: Instrument, now) -> Response:
    response = invitation.responses.filter(instrument_key=key).order_by("-started_at").first()
    if response is None:
        response = Response(
            invitation=invitation,
            participant=invitation.participant,
            instrument_key=key,
            instrument_version=instrument.version,
            protocol_version=invitation.protocol_version,
            started_at=now,
            updated_at=now,
        )
    return response


def _validate_partial(instrument: Instrument, answers: dict[str, Any]) -> dict[str, Any]:
    """Check the answers given so far (missing items are fine until submission)."""
    known = {item.id for item in instrument.items}
    clean = {k: v for k, v in answers.items() if k in known and v not in (None, "", [])}
    try:
        score_answers(instrument, clean)
    except AnswerError as exc:
        raise SurveyError("invalid", exc.errors) from None
    return clean


def _required_missing(instrument: Instrument, answers: dict[str, Any]) -> dict[str, str]:
    return {
        item.id: "this answer is required"
        for item in instrument.items
        if item.required and answers.get(item.id) in (None, "", [])
    }


@dataclass
class SaveResult:
    response: Response
    invitation_completed: bool
    flags: list[str]


@transaction.atomic
def response_save(
    *,
    invitation: Invitation,
    instrument_key: str,
    answers: dict[str, Any],
    submit: bool,
    now: dt.datetime | None = None,
) -> SaveResult:
    """Save answers for one instrument; with `submit`, score it and freeze it."""
    now = now or timezone.now()
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if not invitation.is_open(now):
        raise SurveyError("closed")
    if instrument_key not in invitation.instruments:
        raise SurveyError("unknown_instrument")
    instrument = instrument_for(invitation, instrument_key)
    response = _draft(invitation, instrument_key, instrument, now)
    if response.status == Response.Status.SUBMITTED:
        raise SurveyError("already_submitted")
    clean = _validate_partial(instrument, answers)
    flags: list[str] = []
    if submit:
        missing = _required_missing(instrument, clean)
        if missing:
            raise SurveyError("incomplete", missing)
        result = score_answers(instrument, clean)
        response.scores, response.bands = result.scores, result.bands
        response.flags, response.valid = result.flags, result.valid
        response.status = Response.Status.SUBMITTED
        response.submitted_at = now
        flags = result.flags + _protocol_flags(invitation, instrument_key, clean)
        response.flags = sorted(set(flags))
    response.answers = clean
    response.updated_at = now
    response.save()
    if invitation.status in (Invitation.Status.SENT, Invitation.Status.OPENED):
        invitation.status = Invitation.Status.STARTED
        invitation.started_at = invitation.started_at or now
        invitation.opened_at = invitation.opened_at or now
    completed = False
    if submit:
        done = set(
            invitation.responses.filter(status=Response.Status.SUBMITTED).values_list(
                "instrument_key", flat=True
            )
        )
        if done >= set(invitation.instruments):
            invitation.status = Invitation.Status.COMPLETED
            invitation.completed_at = now
            invitation.next_reminder_at = None
            completed = True
    invitation.save()
    if _safety_flags(response):
        # Guarded: the answers are saved and the crisis resources shown (from the stored flags)
        # even when raising the alert fails; the alert is then retried.
        safety_services.safety_alert_raise_guarded(
            source="survey",
            object_id=response.pk,
            study_slug=invitation.study.slug,
            raise_alert=lambda: _raise_survey_alert(response, invitation, now),
        )
    return SaveResult(response, completed, response.flags)


def _safety_flags(response: Response) -> list[str]:
    return [f for f in response.flags if f.startswith(("safety:", "protocol:"))]


def _raise_survey_alert(response: Response, invitation: Invitation, now: dt.datetime):
    flags = _safety_flags(response)
    # One alert per submitted questionnaire, naming every flag it raised (PHQ-9 item 9 is
    # flagged both by the instrument and, usually, by the protocol's safety plan).
    return safety_services.safety_alert_raise(
        participant=invitation.participant,
        source="survey",
        severity="high",
        category=flags[0].split(":", 1)[1][:40],
        detector=f"survey:{response.instrument_key}",
        excerpt=f"{response.instrument_key}: {', '.join(flags)} (invitation {invitation.pk})",
        now=now,
    )


def survey_alert_for_response(*, response_id: int):
    """Raise the alert a submitted, flagged response is owed (a retry after a failure): None
    when the response is gone, has no safety flag, or its alert exists. The alert is dated
    when the participant submitted, which also identifies it."""
    response = (
        Response.objects.select_related("invitation__study", "invitation__participant")
        .filter(pk=response_id, status=Response.Status.SUBMITTED)
        .first()
    )
    if response is None or not _safety_flags(response):
        return None
    exists = safety_selectors.alert_raised(
        participant_id=response.participant_id,
        source="survey",
        detector=f"survey:{response.instrument_key}",
        created_at=response.submitted_at,
    )
    if exists:
        return None
    return _raise_survey_alert(response, response.invitation, response.submitted_at)


def _protocol_flags(invitation: Invitation, key: str, answers: dict[str, Any]) -> list[str]:
    """Items the protocol's safety plan flags (e.g. PHQ-9 item 9 > 0)."""
    ops = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
    }
    flags = []
    for rule in invitation.protocol_version.content.get("safety", {}).get("flag_items", []):
        value = answers.get(rule["item"])
        if (
            rule["instrument"] == key
            and isinstance(value, int | float)
            and ops[rule["op"]](value, rule["value"])
        ):
            flags.append(f"protocol:{rule['item']}")
    return flags


@transaction.atomic
def response_correct(
    *, response: Response, answers: dict[str, Any], actor, reason: str
) -> Response:
    """A correction is a new submitted response superseding the old one; both are kept."""
    if response.status != Response.Status.SUBMITTED:
        raise SurveyError("not_submitted")
    instrument = instrument_for(response.invitation, response.instrument_key)
    clean = _validate_partial(instrument, answers)
    result = score_answers(instrument, clean)
    now = timezone.now()
    correction = Response.objects.create(
        invitation=response.invitation,
        participant=response.participant,
        instrument_key=response.instrument_key,
        instrument_version=instrument.version,
        status=Response.Status.SUBMITTED,
        answers=clean,
        scores=result.scores,
        bands=result.bands,
        flags=result.flags,
        valid=result.valid,
        protocol_version=response.protocol_version,
        started_at=now,
        updated_at=now,
        submitted_at=now,
        supersedes=response,
    )
    audit_record(
        actor=actor,
        action="survey.correct",
        target=correction,
        study_slug=response.invitation.study.slug,
        data={"supersedes": response.pk, "reason": reason[:200]},
    )
    return correction


class ReminderError(Exception):
    """A reminder cannot be sent now; the message says why (shown to the researcher)."""


def reminder_cap(invitation: Invitation) -> int:
    """How many reminders (scheduled and manual together) the protocol allows for one
    invitation: the entry's `reminders.max`, or its number of `offsets_hours` when `max` is
    absent (the schedule sends all of them then), so an entry without reminders allows none."""
    for entry in invitation.protocol_version.content.get("surveys", {}).get("schedule", []):
        if entry.get("key") == invitation.entry_key:
            reminders = entry.get("reminders") or {}
            return int(reminders.get("max", len(reminders.get("offsets_hours", []))))
    return 0


def invitation_remind_now(
    *, study, invitation: Invitation, actor: Any, now: dt.datetime | None = None
) -> Invitation:
    """Send a reminder for an open invitation now, on a researcher's request.

    A manual reminder counts against the protocol's reminder cap like a scheduled one, so a
    participant never gets more reminders than the protocol (and the ethics approval) allows.
    """
    from .tasks import send_notifications

    now = now or timezone.now()
    cap = reminder_cap(invitation)
    with transaction.atomic():
        count = invitation.reminders_sent
        if count >= cap:
            raise ReminderError(
                f"The protocol allows at most {cap} reminder(s) for this survey and "
                f"{count} were sent; no reminder was sent."
            )
        # The last reminder the cap allows also stops the scheduled ones still to come.
        next_at = invitation.next_reminder_at if count + 1 < cap else None
        # Conditional on the count read and on the invitation still being open: a concurrent
        # beat reminder or a double click cannot both count as the same reminder.
        changed = Invitation.objects.filter(
            pk=invitation.pk,
            status__in=Invitation.OPEN,
            opens_at__lte=now,
            closes_at__gt=now,
            reminders_sent=count,
        ).update(
            reminders_sent=F("reminders_sent") + 1,
            reminders_sent_at=[*invitation.reminders_sent_at, now.isoformat()],
            next_reminder_at=next_at,
        )
        if changed != 1:
            raise ReminderError("Only an open invitation can be reminded; reload and retry.")
        audit_record(
            actor=actor,
            action="survey.remind",
            target=invitation,
            study_slug=study.slug,
            data={"participant": invitation.participant.code, "reminder": count + 1},
        )
        transaction.on_commit(lambda: send_notifications.delay("reminder", [invitation.pk]))
    invitation.refresh_from_db()
    return invitation
