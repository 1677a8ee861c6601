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
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from studyplatform.core.audit import audit_record
from studyplatform.core.digests import lookup_digest, new_token, token_digest

from ..models import Identity, Participant, SignInLink

SIGNIN_SALT = "studyplatform.participant-signin"


class SignInError(ValueError):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _rate_limited(key: str, limit: int, window_s: int) -> bool:
    """Fixed-window counter in Redis; True when the caller is over the limit."""
    cache.add(key, 0, timeout=window_s)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window_s)
        count = 1
    return count > limit


def signin_link_request(*, email: str, client_key: str, study=None) -> int:
    """Email a sign-in link to every participant with this address; returns how many were sent.

    Always behaves the same whether or not the address is known (no account enumeration).
    Rate-limited per address and per client (an IP digest), so the form cannot spam anyone.
    """
    email = email.strip()
    digest = lookup_digest(email, "email")
    if _rate_limited(f"signin:email:{digest}", settings.SIGNIN_EMAIL_LIMIT, 3600) or _rate_limited(
        f"signin:client:{client_key}", settings.SIGNIN_CLIENT_LIMIT, 3600
    ):
        raise SignInError("rate_limited")
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
    url = f"{settings.SITE_URL}/p/signin/{token}/"
    with translation.override(participant.language):
        subject = _("Your sign-in link for %(title)s") % {"title": participant.study.title}
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


def password_set(*, participant: Participant, password: str) -> None:
    participant.password_hash = make_password(password)
    participant.save(update_fields=["password_hash"])


def signin_with_password(*, email: str, password: str, client_key: str) -> Participant:
    if _rate_limited(f"signin:pw:{client_key}", settings.SIGNIN_CLIENT_LIMIT, 3600):
        raise SignInError("rate_limited")
    digest = lookup_digest(email, "email")
    for identity in Identity.objects.select_related("participant__study").filter(
        email_digest=digest, participant__status=Participant.Status.ACTIVE
    ):
        participant = identity.participant
        if participant.password_hash and check_password(password, participant.password_hash):
            return participant
    raise SignInError("bad_credentials")
