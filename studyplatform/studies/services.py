"""Writes for studies: creating studies from protocols, versioning, lifecycle, membership and
team invitations.

Every function here is atomic and writes an audit event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from studyplatform.accounts.selectors import email_is_verified, require_verified_email
from studyplatform.core.audit import audit_record
from studyplatform.core.digests import new_token, token_digest
from studyplatform.core.events import ProtocolChanged, publish
from studyplatform.core.gate_epoch import gate_bump
from studyplatform.core.i18n import localized
from studyplatform.core.model_endpoints import endpoint_get

from .launch import CheckItem, study_launch_checklist
from .models import Arm, ConsentDocument, Membership, ProtocolVersion, Study, StudyInvitation
from .protocol import ProtocolError, ProtocolInvalid, content_hash, parse_protocol_data
from .roles import Role


def _text(value: Any, language: str = "en") -> str:
    return localized(value, language)


def consent_text_hash(doc: dict[str, Any]) -> str:
    """Hash of exactly what a participant reads and ticks: title, body and checkbox labels."""
    parts = [doc["title"], doc["body"]] + [
        f"{c['key']}|{c['label']}|{bool(c.get('required'))}" for c in doc["checkboxes"]
    ]
    return hashlib.sha256("\n\x1e".join(parts).encode("utf-8")).hexdigest()


def _apply_study_fields(study: Study, doc: dict[str, Any]) -> None:
    meta = doc["study"]
    # Researchers' pages show one title: the English one (a per-language title has one, the
    # validator requires every study language); participants read Study.title_in.
    study.title = _text(meta["title"])[:200]
    study.description = _text(meta.get("description"))
    study.timezone = meta["timezone"]
    study.target_enrollment = meta.get("target_enrollment")
    study.duration_days = meta["duration_days"]


def _sync_arms(study: Study, doc: dict[str, Any]) -> None:
    keys = []
    for arm in doc["arms"]:
        model = arm["model"]
        keys.append(arm["key"])
        # Validation has just checked that the endpoint is registered and allows the model.
        endpoint = endpoint_get(model["endpoint"])
        if endpoint is None:
            raise ProtocolInvalid(
                [ProtocolError(("arms", len(keys) - 1, "model", "endpoint"), "is not registered")]
            )
        label = arm.get("label") or arm["key"]
        Arm.objects.update_or_create(
            study=study,
            key=arm["key"],
            defaults={
                "label": label if isinstance(label, dict) else {"en": label},
                "weight": arm.get("weight", 1),
                "endpoint": endpoint.name,
                "provider": endpoint.kind,
                "model_name": model["name"],
                "context_tokens": model.get("context_tokens", 8192),
                "system_prompt": arm.get("system_prompt", ""),
                "parameters": arm.get("parameters", {}),
                "is_active": True,
            },
        )
    # Arms are never deleted: allocations point at them. A removed arm stops taking new people.
    study.arms.exclude(key__in=keys).update(is_active=False)


def _sync_consent(study: Study, doc: dict[str, Any], version: ProtocolVersion) -> None:
    signature = doc["consent"].get("signature", ConsentDocument.Signature.CHECKBOX)
    errors = []
    for i, cdoc in enumerate(doc["consent"]["documents"]):
        digest = consent_text_hash(cdoc)
        existing = ConsentDocument.objects.filter(
            study=study, language=cdoc["language"], version=cdoc["version"]
        ).first()
        if existing is not None:
            if existing.text_hash != digest or existing.signature != signature:
                errors.append(
                    ProtocolError(
                        ("consent", "documents", i, "version"),
                        f"the {cdoc['language']} consent text changed but its version is still "
                        f"{cdoc['version']}; increase the version so participants re-consent",
                    )
                )
            continue
        newest = (
            ConsentDocument.objects.filter(study=study, language=cdoc["language"])
            .order_by("-version")
            .first()
        )
        if newest is not None and cdoc["version"] < newest.version:
            errors.append(
                ProtocolError(
                    ("consent", "documents", i, "version"),
                    f"must not go back: version {newest.version} already exists",
                )
            )
            continue
        ConsentDocument.objects.create(
            study=study,
            version=cdoc["version"],
            language=cdoc["language"],
            title=cdoc["title"],
            body=cdoc["body"],
            checkboxes=cdoc["checkboxes"],
            signature=signature,
            text_hash=digest,
            protocol_version=version,
        )
    if errors:
        raise ProtocolInvalid(errors)


@transaction.atomic
def study_create_from_protocol(*, doc: dict[str, Any], author, change_note: str = "") -> Study:
    """Create a draft study from a validated protocol document; the author becomes owner."""
    if author is not None:
        # Study roles need a verified address; the creator becomes owner, so the same rule.
        require_verified_email(author, _("Verify your email address before creating a study."))
    doc = parse_protocol_data(doc)
    slug = doc["study"]["slug"]
    if Study.objects.filter(slug=slug).exists():
        raise ProtocolInvalid([ProtocolError(("study", "slug"), f"a study called {slug!r} exists")])
    study = Study(slug=slug, created_by=author)
    _apply_study_fields(study, doc)
    study.save()
    if author is not None:
        Membership.objects.create(study=study, user=author, role=Role.OWNER)
    _new_version(study=study, doc=doc, author=author, change_note=change_note or "Created")
    audit_record(actor=author, action="study.create", target=study, study_slug=slug)
    return study


def _new_version(*, study: Study, doc: dict[str, Any], author, change_note: str) -> ProtocolVersion:
    last = study.versions.order_by("-number").first()
    version = ProtocolVersion.objects.create(
        study=study,
        number=(last.number + 1) if last else 1,
        content=doc,
        content_hash=content_hash(doc),
        change_note=change_note,
        status_at_creation=study.status,
        author=author,
    )
    _sync_arms(study, doc)
    _sync_consent(study, doc, version)
    _apply_study_fields(study, doc)
    study.current_version = version
    study.save()
    return version


@transaction.atomic
def protocol_version_create(
    *, study: Study, doc: dict[str, Any], author, change_note: str = ""
) -> tuple[ProtocolVersion, bool]:
    """Record a new protocol version; returns (version, created).

    Versions are immutable: every change makes a new one, and data rows record the version they
    were collected under. Submitting an unchanged document creates nothing. Once a study is live
    a change note is required, because reviewers of the dataset will ask why the protocol changed.
    """
    doc = parse_protocol_data(doc)
    study = Study.objects.select_for_update().get(pk=study.pk)
    if doc["study"]["slug"] != study.slug:
        raise ProtocolInvalid(
            [
                ProtocolError(
                    ("study", "slug"), f"must stay {study.slug!r} (it identifies the study)"
                )
            ]
        )
    if study.status == Study.Status.CLOSED:
        raise ProtocolInvalid([ProtocolError((), "the study is closed; its protocol is final")])
    current = study.current_version
    if current is not None and current.content_hash == content_hash(doc):
        return current, False
    if study.is_live and not change_note.strip():
        raise ProtocolInvalid(
            [ProtocolError(("change_note",), "describe the change (required once a study is live)")]
        )
    version = _new_version(study=study, doc=doc, author=author, change_note=change_note)
    # A new version may carry a new consent version: every participant's cached gate checks
    # consent again (participants.session).
    gate_bump(study_id=study.pk)
    # After the version commits: surveys resynchronise schedules.
    transaction.on_commit(lambda: publish(ProtocolChanged(study=study, version=version)))
    audit_record(
        actor=author,
        action="protocol.version_create",
        target=version,
        study_slug=study.slug,
        data={"number": version.number, "hash": version.content_hash, "note": change_note},
    )
    return version, True


class TransitionError(ValueError):
    pass


class LaunchBlocked(TransitionError):
    """A piloting study may not start recruiting: `failing` are the checklist items that fail."""

    def __init__(self, failing: list[CheckItem]):
        self.failing = failing
        super().__init__(
            f"not launched: {len(failing)} launch checklist item(s) fail: "
            + ", ".join(item.key for item in failing)
        )


@transaction.atomic
def study_transition(*, study: Study, to: str, actor) -> Study:
    """Move a study along its lifecycle. Launching (piloting -> recruiting) runs the launch
    checklist here, so no caller (console, API, admin, command) can launch a study that fails
    it; a failure raises `LaunchBlocked` with the failing items."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if to not in Study.Status.values:
        raise TransitionError(f"unknown status {to!r}; use one of: {', '.join(Study.Status)}")
    if not study.can_move_to(to):
        allowed = ", ".join(sorted(Study.TRANSITIONS[Study.Status(study.status)])) or "none"
        raise TransitionError(
            f"a {study.status} study cannot move to {to} (allowed from here: {allowed})"
        )
    if study.status == Study.Status.PILOTING and to == Study.Status.RECRUITING:
        failing = [item for item in study_launch_checklist(study) if not item.ok]
        if failing:
            raise LaunchBlocked(failing)
    old = study.status
    study.status = to
    fields = ["status", "updated_at"]
    if to == Study.Status.CLOSED:
        study.closed_at = timezone.now()
        fields.append("closed_at")
    study.save(update_fields=fields)
    # Every participant's cached gate checks again (closing above all; participants.session).
    gate_bump(study_id=study.pk)
    audit_record(
        actor=actor,
        action="study.transition",
        target=study,
        study_slug=study.slug,
        data={"from": old, "to": to},
    )
    return study


class MembershipError(ValueError):
    pass


@transaction.atomic
def membership_add(*, study: Study, user, role: str, actor) -> Membership:
    if role not in {r.value for r in Role}:
        valid = ", ".join(r.value for r in Role)
        raise MembershipError(f"unknown role {role!r}; use one of: {valid}")
    if not email_is_verified(user):
        # Enforced here, not only in views: no path (API, console, admin, shell) may give a role
        # to an account that has not proved it reads the mail sent to its address.
        raise MembershipError(
            _(
                "%(user)s has not verified their email address; only accounts with a verified "
                "address can hold a study role"
            )
            % {"user": user.get_username()}
        )
    membership, created = Membership.objects.get_or_create(study=study, user=user, role=role)
    if created:
        audit_record(
            actor=actor,
            action="membership.add",
            target=membership,
            study_slug=study.slug,
            data={"user": user.get_username(), "role": role},
        )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor) -> None:
    study = membership.study
    if membership.role == Role.OWNER:
        owners = Membership.objects.select_for_update().filter(study=study, role=Role.OWNER)
        if owners.count() <= 1:
            raise MembershipError("a study must keep at least one owner")
    audit_record(
        actor=actor,
        action="membership.remove",
        target=membership,
        study_slug=study.slug,
        data={"user": membership.user.get_username(), "role": membership.role},
    )
    membership.delete()


# --- team invitations ------------------------------------------------------------------------


class InvitationError(ValueError):
    """`code` lets pages and the API pick a status; the message is for the person."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _invitation_email(invitation: StudyInvitation, token: str, inviter) -> None:
    link = settings.SITE_URL + reverse("console:invitation", kwargs={"token": token})
    signup = settings.SITE_URL + reverse("signup")
    expires = formats.date_format(timezone.localtime(invitation.expires_at), "DATETIME_FORMAT")
    who = inviter.get_username() if inviter is not None else _("A platform admin")
    body = "\n".join(
        [
            _('%(who)s invited you to join the study "%(study)s" as %(role)s.')
            % {"who": who, "study": invitation.study.title, "role": invitation.role},
            "",
            _("To accept, open this link while signed in to your researcher account for %(email)s:")
            % {"email": invitation.email},
            link,
            "",
            _(
                "No account yet? Create one with this same address, confirm the address from "
                "the email we send you, then open the link above again:"
            ),
            signup,
            "",
            _("The invitation expires on %(date)s (UTC).") % {"date": expires},
            _("If you do not expect this invitation, ignore this email."),
        ]
    )
    send_mail(
        _("Invitation to %(study)s") % {"study": invitation.study.title},
        body,
        None,
        [invitation.email],
    )


def invitation_create(*, study: Study, email: str, role: str, actor) -> StudyInvitation:
    """Invite whoever reads `email` to `role` in `study` and email them the link.

    A pending invitation for the same address and role is replaced (its link stops working),
    so "invite again" is how an owner resends.
    """
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise InvitationError("email", _("Enter a valid email address.")) from None
    if role not in {r.value for r in Role}:
        raise InvitationError("role", _("Choose a role."))
    now = timezone.now()
    token = new_token()
    with transaction.atomic():
        if Membership.objects.filter(study=study, role=role, user__email__iexact=email).exists():
            raise InvitationError("member", _("%(email)s already has that role") % {"email": email})
        replaced = StudyInvitation.objects.select_for_update().filter(
            study=study, email__iexact=email, role=role, status=StudyInvitation.Status.PENDING
        )
        for old in replaced:
            old.status = StudyInvitation.Status.REVOKED
            old.closed_at = now
            old.save(update_fields=["status", "closed_at"])
            audit_record(
                actor=actor,
                action="invitation.revoke",
                target=old,
                study_slug=study.slug,
                data={"email": old.email, "role": old.role, "reason": "replaced"},
            )
        invitation = StudyInvitation.objects.create(
            study=study,
            email=email,
            role=role,
            token_digest=token_digest(token),
            invited_by=actor if getattr(actor, "is_authenticated", False) else None,
            expires_at=now + dt.timedelta(days=settings.TEAM_INVITATION_MAX_AGE_DAYS),
        )
        audit_record(
            actor=actor,
            action="invitation.create",
            target=invitation,
            study_slug=study.slug,
            data={"email": email, "role": role},
        )
    # Sent once the invitation is committed, so the link always works.
    _invitation_email(invitation, token, invitation.invited_by)
    return invitation


def invitation_check(invitation: StudyInvitation | None, user, *, now=None) -> None:
    """Raise InvitationError saying why `user` cannot accept `invitation` now (or return)."""
    now = now or timezone.now()
    if invitation is None:
        raise InvitationError(
            "unknown", _("This invitation link is not valid. Copy the whole link from the email.")
        )
    if invitation.status == StudyInvitation.Status.ACCEPTED:
        raise InvitationError("closed", _("This invitation has already been accepted."))
    if invitation.status == StudyInvitation.Status.REVOKED:
        raise InvitationError(
            "closed", _("This invitation was withdrawn. Ask the study's owner for a new one.")
        )
    if now >= invitation.expires_at:
        raise InvitationError(
            "closed", _("This invitation has expired. Ask the study's owner for a new one.")
        )
    if not getattr(user, "is_authenticated", False):
        raise InvitationError("anonymous", _("Sign in to accept this invitation."))
    if not user.email or user.email.lower() != invitation.email.lower():
        raise InvitationError(
            "wrong_account",
            _(
                "This invitation is for %(email)s, and you are signed in as an account with "
                "another address. Sign out, then sign in with the account for %(email)s (or "
                "create one with that address)."
            )
            % {"email": invitation.email},
        )
    if not email_is_verified(user):
        raise InvitationError(
            "unverified",
            _(
                "Confirm your email address first (use the link we emailed you), then open "
                "this invitation again."
            ),
        )


@transaction.atomic
def invitation_accept(*, token: str, user) -> Membership:
    """Give `user` the invited role: only a signed-in account whose verified address is the
    invited one, holding the emailed token, while the invitation is pending and unexpired."""
    invitation = (
        StudyInvitation.objects.select_for_update()
        .select_related("study")
        .filter(token_digest=token_digest(token))
        .first()
    )
    invitation_check(invitation, user)
    membership = membership_add(study=invitation.study, user=user, role=invitation.role, actor=user)
    invitation.status = StudyInvitation.Status.ACCEPTED
    invitation.accepted_by = user
    invitation.closed_at = timezone.now()
    invitation.save(update_fields=["status", "accepted_by", "closed_at"])
    audit_record(
        actor=user,
        action="invitation.accept",
        target=invitation,
        study_slug=invitation.study.slug,
        data={"email": invitation.email, "role": invitation.role},
    )
    return membership


@transaction.atomic
def invitation_revoke(*, invitation: StudyInvitation, actor) -> StudyInvitation:
    invitation = StudyInvitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.status != StudyInvitation.Status.PENDING:
        raise InvitationError(
            "closed",
            _("Only pending invitations can be withdrawn (this one is %(status)s).")
            % {"status": invitation.get_status_display().lower()},
        )
    invitation.status = StudyInvitation.Status.REVOKED
    invitation.closed_at = timezone.now()
    invitation.save(update_fields=["status", "closed_at"])
    audit_record(
        actor=actor,
        action="invitation.revoke",
        target=invitation,
        study_slug=invitation.study.slug,
        data={"email": invitation.email, "role": invitation.role},
    )
    return invitation
