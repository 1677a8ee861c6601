"""Joining a study: availability, funnel counts, enrollment with consent and allocation."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from studyplatform.core.audit import audit_record
from studyplatform.core.digests import lookup_digest, token_digest
from studyplatform.core.events import ParticipantEnrolled, ParticipantTimezoneChanged, publish
from studyplatform.core.gate_epoch import gate_bump
from studyplatform.core.links import site_url
from studyplatform.core.ratelimit import rate_limited
from studyplatform.studies.models import Arm, ConsentDocument, Study
from studyplatform.studies.selectors import current_consent_for

from .. import allocation as alloc
from ..models import (
    Allocation,
    AllocationState,
    ConsentRecord,
    FunnelCount,
    Identity,
    Participant,
    PilotInvite,
)
from .signin import return_link_issue

log = logging.getLogger(__name__)


class EnrollmentError(ValueError):
    """A reason a person cannot join, with a code the view turns into a translated message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class JoinContext:
    """What arrived with the study link: recruitment-panel parameters and a pilot invitation."""

    panel: str = ""
    panel_pid: str = ""
    panel_study_id: str = ""
    panel_session_id: str = ""
    pilot_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    # Query parameters a study link may carry. The study page moves them into the session and
    # redirects to the bare URL, so they never reach access logs or browser history.
    QUERY_KEYS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "pilot")

    @classmethod
    def from_query(cls, params) -> JoinContext:
        pid = (params.get("PROLIFIC_PID") or "").strip()[:100]
        return cls(
            panel="prolific" if pid else "",
            panel_pid=pid,
            panel_study_id=(params.get("STUDY_ID") or "").strip()[:100],
            panel_session_id=(params.get("SESSION_ID") or "").strip()[:100],
            pilot_token=(params.get("pilot") or "").strip()[:100],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "panel": self.panel,
            "panel_pid": self.panel_pid,
            "panel_study_id": self.panel_study_id,
            "panel_session_id": self.panel_session_id,
            "pilot_token": self.pilot_token,
        }


def funnel_increment(study: Study, stage: str, *, day: dt.date | None = None) -> None:
    """Add one to an anonymous daily counter (visited, screened, eligible, ineligible:<rule>...)."""
    day = day or timezone.now().date()
    updated = FunnelCount.objects.filter(study=study, day=day, stage=stage).update(
        count=F("count") + 1
    )
    if updated:
        return
    try:
        with transaction.atomic():
            FunnelCount.objects.create(study=study, day=day, stage=stage, count=1)
    except IntegrityError:  # another request created it first
        FunnelCount.objects.filter(study=study, day=day, stage=stage).update(count=F("count") + 1)


def pilot_invite_for(study: Study, token: str) -> PilotInvite | None:
    if not token:
        return None
    return PilotInvite.objects.filter(
        study=study, token_digest=token_digest(token), revoked=False, used_by__isnull=True
    ).first()


def enrolled_count(study: Study) -> int:
    return Participant.objects.filter(study=study, is_pilot=False).count()


def join_state(study: Study, *, pilot_token: str = "") -> str:
    """One of: open, pilot (an invited tester of a piloting study), closed, full, invite_only."""
    if study.status == Study.Status.PILOTING:
        return "pilot" if pilot_invite_for(study, pilot_token) else "invite_only"
    if study.status != Study.Status.RECRUITING:
        return "closed"
    if study.target_enrollment and enrolled_count(study) >= study.target_enrollment:
        return "full"
    return "open"


def participant_for_panel_id(study: Study, panel_pid: str) -> Participant | None:
    """The participant who joined with this recruitment-panel id, for de-duplication only.

    A panel id identifies; it never authenticates. Every researcher the person ever worked for
    knows it, so it must never open the participant's page (see the study page view).
    """
    if not panel_pid:
        return None
    identity = (
        Identity.objects.select_related("participant")
        .filter(study=study, panel_pid_digest=lookup_digest(panel_pid, "panel"))
        .first()
    )
    return identity.participant if identity else None


def _valid_timezone(name: str, fallback: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return fallback
    return name


def _arm_weights(study: Study) -> tuple[list[alloc.ArmWeight], dict[str, Arm]]:
    arms = list(study.arms.filter(is_active=True).order_by("key"))
    return [alloc.ArmWeight(a.key, a.weight) for a in arms], {a.key: a for a in arms}


def _locked_state(study: Study, stratum: str) -> AllocationState:
    # Create the row if it is missing without tripping over a concurrent creator, then lock it:
    # the lock serializes allocations within a stratum, so blocks stay balanced under load.
    AllocationState.objects.bulk_create(
        [AllocationState(study=study, stratum=stratum)], ignore_conflicts=True
    )
    return AllocationState.objects.select_for_update().get(study=study, stratum=stratum)


def _allocate(participant: Participant, now: dt.datetime) -> Allocation:
    study = participant.study
    protocol = study.protocol
    weights, arms = _arm_weights(study)
    config = protocol.get("allocation", {})
    method = config.get("method", "permuted_blocks" if len(weights) > 1 else "simple")
    strata = config.get("strata", []) if method == "stratified_blocks" else []
    stratum = alloc.stratum_key(strata, participant.screener_answers)
    state = _locked_state(study, stratum)
    position = state.next_position
    block_no = None
    if method == "simple":
        key = alloc.simple_draw(study.allocation_seed, position, weights)
    else:
        sizes = config.get("block_sizes") or alloc.default_block_sizes(weights)
        key, cursor = alloc.arm_at(
            study.allocation_seed,
            stratum,
            position,
            weights,
            sizes,
            alloc.BlockCursor(state.block_no, state.block_start),
        )
        block_no = cursor.block_no
        state.block_no, state.block_start = cursor.block_no, cursor.block_start
    state.next_position = position + 1
    state.save(update_fields=["next_position", "block_no", "block_start"])
    allocation = Allocation.objects.create(
        participant=participant,
        arm=arms[key],
        method=method,
        stratum=stratum,
        sequence_number=position,
        block_number=block_no,
        allocated_at=now,
        protocol_version=study.current_version,
    )
    audit_record(
        actor=f"participant {participant.code}",
        action="participant.allocate",
        target=allocation,
        study_slug=study.slug,
        data={"method": method, "stratum": stratum, "position": position},
    )
    return allocation


def validate_consent_choices(document: ConsentDocument, choices: dict[str, bool]) -> None:
    missing = [k for k in document.required_keys if not choices.get(k)]
    if missing:
        raise EnrollmentError(
            "consent_required", "required consent items not ticked: " + ", ".join(missing)
        )


def _clean_choices(document: ConsentDocument, choices: dict[str, Any]) -> dict[str, bool]:
    return {c["key"]: bool(choices.get(c["key"])) for c in document.checkboxes}


@transaction.atomic
def participant_enroll(
    *,
    study: Study,
    answers: dict[str, Any],
    language: str,
    timezone_name: str,
    choices: dict[str, Any],
    signature_name: str = "",
    email: str = "",
    name: str = "",
    join: JoinContext | None = None,
    now: dt.datetime | None = None,
) -> Participant:
    """Consent, create the participant and vault row, and allocate to an arm, all or nothing."""
    join = join or JoinContext()
    now = now or timezone.now()
    state = join_state(study, pilot_token=join.pilot_token)
    if state not in ("open", "pilot"):
        raise EnrollmentError(state, f"the study is not accepting participants ({state})")
    document = current_consent_for(study, language)
    if document is None:
        raise EnrollmentError("no_consent", "the study has no consent document")
    clean = _clean_choices(document, choices)
    validate_consent_choices(document, clean)
    if document.signature == ConsentDocument.Signature.TYPED_NAME and not signature_name.strip():
        raise EnrollmentError("signature_required", "type your name to sign")
    email = email.strip()
    if join.panel_pid and participant_for_panel_id(study, join.panel_pid):
        raise EnrollmentError("already_enrolled", "this panel id has already joined")
    email_digest = lookup_digest(email, "email") if email else ""
    if email_digest and Identity.objects.filter(study=study, email_digest=email_digest).exists():
        raise EnrollmentError("email_taken", "this email has already joined; sign in instead")

    participant = Participant.objects.create(
        study=study,
        is_pilot=state == "pilot",
        language=document.language,
        timezone=_valid_timezone(timezone_name, study.timezone),
        enrolled_at=now,
        enrollment_version=study.current_version,
        screener_answers=answers,
        last_seen_at=now,
    )
    Identity.objects.create(
        participant=participant,
        study=study,
        email=email,
        email_digest=email_digest,
        name=name.strip()[:200],
        panel=join.panel,
        panel_pid=join.panel_pid,
        panel_pid_digest=lookup_digest(join.panel_pid, "panel") if join.panel_pid else "",
        panel_study_id=join.panel_study_id,
        panel_session_id=join.panel_session_id,
        date_shift_days=secrets.randbelow(364) + 1,
    )
    _consent_record(
        participant=participant,
        document=document,
        choices=clean,
        signature_name=signature_name,
        signed_at=now,
        protocol_version=study.current_version,
    ).save(force_insert=True)
    if state == "pilot":
        invite = pilot_invite_for(study, join.pilot_token)
        invite.used_by = participant
        invite.save(update_fields=["used_by"])
    _allocate(participant, now)
    # Inside this transaction: surveys create the participant's schedule.
    publish(ParticipantEnrolled(participant=participant))
    funnel_increment(study, "consented", day=now.date())
    audit_record(
        actor=f"participant {participant.code}",
        action="participant.enroll",
        target=participant,
        study_slug=study.slug,
        data={
            "consent_version": document.version,
            "language": document.language,
            "pilot": participant.is_pilot,
        },
    )
    return participant


def _consent_record(
    *,
    participant: Participant,
    document: ConsentDocument,
    choices: dict[str, Any],
    signature_name: str,
    signed_at: dt.datetime,
    protocol_version: Any,
) -> ConsentRecord:
    """The one place a ConsentRecord is built (unsaved, so a cohort can be bulk-inserted):
    it copies exactly what was signed (version, language, text hash) from the document, so a
    record stays meaningful after the document is superseded."""
    return ConsentRecord(
        participant=participant,
        document=document,
        version=document.version,
        language=document.language,
        text_hash=document.text_hash,
        choices=choices,
        signature_name=signature_name.strip()[:200],
        signed_at=signed_at,
        protocol_version=protocol_version,
    )


def consent_due(participant: Participant) -> ConsentDocument | None:
    """The consent document the participant must (re-)sign before anything else, if any."""
    document = current_consent_for(participant.study, participant.language)
    latest = participant.consent_records.order_by("-signed_at").first()
    if document is None:
        return None
    if latest is None or latest.version < document.version:
        return document
    return None


@transaction.atomic
def consent_renew(
    *,
    participant: Participant,
    choices: dict[str, Any],
    signature_name: str = "",
    now: dt.datetime | None = None,
) -> ConsentRecord:
    """Sign the current consent version (after researchers published a new one)."""
    document = consent_due(participant)
    if document is None:
        raise EnrollmentError("nothing_to_sign", "your consent is up to date")
    clean = _clean_choices(document, choices)
    validate_consent_choices(document, clean)
    if document.signature == ConsentDocument.Signature.TYPED_NAME and not signature_name.strip():
        raise EnrollmentError("signature_required", "type your name to sign")
    record = _consent_record(
        participant=participant,
        document=document,
        choices=clean,
        signature_name=signature_name,
        signed_at=now or timezone.now(),
        protocol_version=participant.study.current_version,
    )
    record.save(force_insert=True)
    # The participant's cached gates were "consent due" (never cached) or are now outdated.
    gate_bump(participant_id=participant.pk)
    audit_record(
        actor=f"participant {participant.code}",
        action="participant.reconsent",
        target=record,
        study_slug=participant.study.slug,
        data={"version": document.version},
    )
    return record


def latest_consent(participant: Participant) -> ConsentRecord | None:
    return participant.consent_records.select_related("document").order_by("-signed_at").first()


class TimezoneError(ValueError):
    pass


@transaction.atomic
def participant_set_timezone(*, participant: Participant, timezone_name: str) -> Participant:
    """Change the participant's time zone (they moved, or the browser guessed wrong). Future
    invitations follow the new zone; those already sent keep their times."""
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimezoneError(f"unknown time zone {timezone_name!r}") from None
    old = participant.timezone
    if old == timezone_name:
        return participant
    participant.timezone = timezone_name
    participant.save(update_fields=["timezone"])
    # Inside this transaction: surveys reschedule future occurrences in the new zone.
    publish(ParticipantTimezoneChanged(participant=participant))
    audit_record(
        actor=f"participant {participant.code}",
        action="participant.timezone",
        target=participant,
        study_slug=participant.study.slug,
        data={"from": old, "to": timezone_name},
    )
    return participant


@transaction.atomic
def pilot_invite_create(*, study: Study, label: str, actor) -> tuple[PilotInvite, str]:
    """A pilot-tester invitation; returns (invite, token). Only the token's digest is stored,
    so the link can be shown once and never again."""
    from studyplatform.core.digests import new_token

    token = new_token()
    invite = PilotInvite.objects.create(
        study=study, label=label, token_digest=token_digest(token), created_by=actor
    )
    audit_record(
        actor=actor,
        action="pilot_invite.create",
        target=invite,
        study_slug=study.slug,
        data={"label": invite.label},
    )
    return invite, token


@dataclass
class JoinResult:
    """What the consent form led to. `participant` is None when the email address had already
    joined: the caller answers exactly as for a new participant (no account enumeration), and
    the address's owner gets an email instead."""

    participant: Participant | None
    return_token: str = ""


def participant_join(
    *,
    study: Study,
    answers: dict[str, Any],
    language: str,
    timezone_name: str,
    choices: dict[str, Any],
    client_key: str,
    signature_name: str = "",
    email: str = "",
    join: JoinContext | None = None,
) -> JoinResult:
    """The consent form's submission: enroll, or tell an already-enrolled address's owner.

    - Rate-limited per client (ENROLLMENT_CLIENT_LIMIT an hour): EnrollmentError "rate_limited".
    - A participant without an email address gets a personal return link (only its digest is
      stored), issued in the same transaction as the enrollment: nobody is left enrolled
      without a way back.
    - An address that has already joined gets a note by email and nothing is written; the
      result looks like a new enrollment to the caller.
    """
    if rate_limited(f"enroll:client:{client_key}", settings.ENROLLMENT_CLIENT_LIMIT, 3600):
        raise EnrollmentError("rate_limited", "too many enrollment attempts from this client")
    email = email.strip()
    try:
        with transaction.atomic():
            participant = participant_enroll(
                study=study,
                answers=answers,
                language=language,
                timezone_name=timezone_name,
                choices=choices,
                signature_name=signature_name,
                email=email,
                join=join,
            )
            token = "" if email else return_link_issue(participant=participant)
    except EnrollmentError as exc:
        if exc.code != "email_taken":
            raise
        _email_already_joined(study=study, email=email, language=language)
        return JoinResult(participant=None)
    except IntegrityError:
        # A concurrent enrollment with the same address or panel id won the unique constraint.
        digest = lookup_digest(email, "email") if email else ""
        if digest and Identity.objects.filter(study=study, email_digest=digest).exists():
            _email_already_joined(study=study, email=email, language=language)
            return JoinResult(participant=None)
        raise EnrollmentError("already_enrolled", "this panel id has already joined") from None
    if email:  # the enrollment is committed by now (the atomic block above has closed)
        _email_joined(participant=participant, email=email)
    return JoinResult(participant=participant, return_token=token)


def _email_joined(*, participant: Participant, email: str) -> None:
    """Welcome a new participant and say how to come back (the page says an email was sent)."""
    with translation.override(participant.language):
        subject = _("You joined %(title)s") % {"title": participant.study.title_in()}
        body = render_to_string(
            "participants/email/joined.txt",
            {"study": participant.study, "signin_url": site_url("participants:signin")},
        )
    _send_notice(subject, body, email)


def _send_notice(subject: str, body: str, address: str) -> None:
    """Send an enrollment email without letting a mail failure undo or hide the enrollment.

    The participant row is already committed: a 500 here would leave them enrolled but signed
    out, and (for the already-joined notice) would answer differently for an address that takes
    part. The failure is logged for the operator instead.
    """
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [address])
    except Exception:
        log.exception("enrollment email could not be sent")


def _email_already_joined(*, study: Study, email: str, language: str) -> None:
    """Tell the owner of an address that someone tried to join with it, at most a few times an
    hour per address (SIGNIN_EMAIL_LIMIT), so the form cannot be used to flood them."""
    digest = lookup_digest(email, "email")
    existing = (
        Identity.objects.select_related("participant")
        .filter(study=study, email_digest=digest)
        .first()
    )
    if existing is None:
        return
    audit_record(
        actor="anonymous",
        action="participant.enroll_email_taken",
        target=existing.participant,
        study_slug=study.slug,
    )
    if rate_limited(f"enroll:notice:{digest}", settings.SIGNIN_EMAIL_LIMIT, 3600):
        return
    with translation.override(existing.participant.language or language):
        subject = _("Someone tried to join %(title)s with your email address") % {
            "title": study.title_in()
        }
        body = render_to_string(
            "participants/email/already_joined.txt",
            {"study": study, "signin_url": site_url("participants:signin")},
        )
    _send_notice(subject, body, existing.email)
