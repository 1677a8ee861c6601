"""Passwordless sign-in: single-use expiring links by email, personal return links, passwords.

A sign-in token is `signing.dumps({"l": link id, "n": nonce})`: the signature and its timestamp
reject forged or expired tokens before any query, and the stored nonce digest plus `used_at`
makes each link work exactly once.
"""

from __future__ import annotations

import datetime as dt
import secrets

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from studyplatform.core.audit import audit_record
from studyplatform.core.digests import lookup_digest, new_token, token_digest
from studyplatform.core.links import site_url
from studyplatform.core.ratelimit import rate_limited

from ..models import Identity, Participant, SignInLink

SIGNIN_SALT = "studyplatform.participant-signin"


class SignInError(ValueError):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def signin_link_request(*, email: str, client_key: str, study=None) -> int:
    """Email a sign-in link to every participant with this address; returns how many were sent.

    Always behaves the same whether or not the address is known (no account enumeration).
    Limits, all per hour:
    - per client (an IP digest), SIGNIN_CLIENT_LIMIT requests: over it the client is told to
      wait (SignInError "rate_limited"). This is the only limit a caller ever sees.
    - per address and client, SIGNIN_EMAIL_LIMIT emails; per address from all clients,
      SIGNIN_ADDRESS_LIMIT emails. Over these no email is sent but the answer is unchanged, so
      a stranger cannot lock a participant out: requests from the participant's own client
      still send a link, and every email a stranger triggered is itself a working link in the
      participant's inbox.
    """
    email = email.strip()
    digest = lookup_digest(email, "email")
    if not _signin_email_allowed(digest=digest, client_key=client_key):
        return 0
    identities = Identity.objects.select_related("participant__study").filter(
        email_digest=digest, participant__status=Participant.Status.ACTIVE
    )
    if study is not None:
        identities = identities.filter(study=study)
    sent = 0
    for identity in identities:
        token = signin_link_create(participant=identity.participant)
        _send_signin_email(identity, token)
        sent += 1
    return sent


def _signin_email_allowed(*, digest: str, client_key: str) -> bool:
    """Count one sign-in email request; False when the address caps say send nothing.

    Over the per-client limit the caller is told to wait (SignInError "rate_limited"); over the
    per-address caps nothing is sent but the answer stays the same (see signin_link_request).
    """
    if rate_limited(f"signin:client:{client_key}", settings.SIGNIN_CLIENT_LIMIT, 3600):
        raise SignInError("rate_limited")
    # Count the pair first: a stranger's own cap must not use up the address-wide allowance.
    return not (
        rate_limited(f"signin:email:{digest}:{client_key}", settings.SIGNIN_EMAIL_LIMIT, 3600)
        or rate_limited(f"signin:email:{digest}", settings.SIGNIN_ADDRESS_LIMIT, 3600)
    )


def participant_has_email(participant: Participant) -> bool:
    return Identity.objects.filter(participant=participant).exclude(email_digest="").exists()


def signin_link_email(*, participant: Participant, client_key: str, next_path: str = "") -> bool:
    """Email the signed-in participant a fresh one-time link (e.g. to confirm a password change).

    False when nothing was sent: no email address on file, or the same silent caps as
    `signin_link_request` (per client the caller is told to wait).
    """
    identity = Identity.objects.filter(participant=participant).exclude(email_digest="").first()
    if identity is None or not identity.email:
        return False
    if not _signin_email_allowed(digest=identity.email_digest, client_key=client_key):
        return False
    _send_signin_email(identity, signin_link_create(participant=participant, next_path=next_path))
    return True


def signin_link_create(*, participant: Participant, next_path: str = "") -> str:
    nonce = secrets.token_urlsafe(16)
    link = SignInLink.objects.create(
        participant=participant,
        nonce_digest=token_digest(nonce),
        expires_at=timezone.now() + dt.timedelta(seconds=settings.SIGNIN_LINK_MAX_AGE_S),
        next_path=next_path,
    )
    return signing.dumps({"l": link.pk, "n": nonce}, salt=SIGNIN_SALT, compress=True)


def _send_signin_email(identity: Identity, token: str) -> None:
    participant = identity.participant
    url = site_url("participants:signin_token", kwargs={"token": token})
    with translation.override(participant.language):
        subject = _("Your sign-in link for %(title)s") % {"title": participant.study.title_in()}
        body = render_to_string(
            "participants/email/signin.txt",
            {
                "url": url,
                "study": participant.study,
                "minutes": settings.SIGNIN_LINK_MAX_AGE_S // 60,
            },
        )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [identity.email])


@transaction.atomic
def signin_link_consume(token: str) -> tuple[Participant, str]:
    """Return (participant, next path) for a valid unused link, marking it used."""
    try:
        data = signing.loads(token, salt=SIGNIN_SALT, max_age=settings.SIGNIN_LINK_MAX_AGE_S)
    except signing.SignatureExpired:
        raise SignInError("expired") from None
    except signing.BadSignature:
        raise SignInError("invalid") from None
    now = timezone.now()
    claimed = SignInLink.objects.filter(
        pk=data.get("l"),
        nonce_digest=token_digest(str(data.get("n"))),
        used_at__isnull=True,
        expires_at__gt=now,
    ).update(used_at=now)
    if claimed != 1:
        link = SignInLink.objects.filter(pk=data.get("l")).first()
        raise SignInError("used" if link and link.used_at else "invalid")
    link = SignInLink.objects.select_related("participant__study").get(pk=data["l"])
    participant = link.participant
    if participant.status == Participant.Status.WITHDRAWN:
        raise SignInError("withdrawn")
    audit_record(
        actor=f"participant {participant.code}",
        action="participant.signin",
        target=participant,
        study_slug=participant.study.slug,
        data={"via": "email"},
    )
    return participant, link.next_path


def return_link_issue(*, participant: Participant) -> str:
    """A new personal return link (revoking the previous one). Shown once to bookmark."""
    token = new_token()
    participant.return_token_digest = token_digest(token)
    participant.save(update_fields=["return_token_digest"])
    audit_record(
        actor=f"participant {participant.code}",
        action="participant.return_link",
        target=participant,
        study_slug=participant.study.slug,
    )
    return token


def participant_for_return_token(token: str) -> Participant | None:
    if not token:
        return None
    return (
        Participant.objects.select_related("study")
        .filter(return_token_digest=token_digest(token))
        .exclude(status=Participant.Status.WITHDRAWN)
        .first()
    )


def password_set(
    *,
    participant: Participant,
    password: str,
    current_password: str = "",
    fresh_signin: bool = False,
    client_key: str = "",
) -> None:
    """Set or change the participant's password.

    A session alone is not enough: it may be a borrowed phone or an old, forgotten browser. The
    caller proves it is the participant either with the current password or by having signed
    in through a one-time emailed link or the personal return link a few minutes ago
    (`fresh_signin`, recorded in the session by the sign-in). Wrong current passwords count
    against the per-client password limit, so this form is no guessing oracle.
    """
    if not fresh_signin:
        if rate_limited(f"signin:pw:{client_key}", settings.SIGNIN_CLIENT_LIMIT, 3600):
            raise SignInError("rate_limited")
        if not participant.password_hash:
            raise SignInError("fresh_signin_required")
        if not check_password(current_password, participant.password_hash):
            raise SignInError("bad_current_password")
    participant.password_hash = make_password(password)
    participant.save(update_fields=["password_hash"])
    audit_record(
        actor=f"participant {participant.code}",
        action="participant.password_set",
        target=participant,
        study_slug=participant.study.slug,
        data={"via": "fresh_signin" if fresh_signin else "current_password"},
    )


def signin_with_password(*, email: str, password: str, client_key: str) -> Participant:
    if rate_limited(f"signin:pw:{client_key}", settings.SIGNIN_CLIENT_LIMIT, 3600):
        raise SignInError("rate_limited")
    digest = lookup_digest(email, "email")
    for identity in Identity.objects.select_related("participant__study").filter(
        email_digest=digest, participant__status=Participant.Status.ACTIVE
    ):
        participant = identity.participant
        if participant.password_hash and check_password(password, participant.password_hash):
            return participant
    raise SignInError("bad_credentials")
