"""Writes for researcher accounts: sign-up, email verification, throttled password resets.

Nothing here tells a caller whether an address has an account: sign-up and reset answer the
same either way, and the owner of an address learns about attempts by email instead.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from studyplatform.core.audit import audit_record
from studyplatform.core.digests import lookup_digest
from studyplatform.core.ratelimit import rate_limited

from .models import EmailVerification
from .selectors import email_is_verified

log = logging.getLogger(__name__)

VERIFY_SALT = "studyplatform.accounts.verify-email"


class SignUpError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class VerificationError(ValueError):
    pass


def _absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def _address_allows_email(email: str) -> bool:
    """Per-address cap on account emails (verification links, sign-up notices), so the sign-up
    and resend forms cannot be used to flood someone's inbox."""
    digest = lookup_digest(email, "email")
    return not rate_limited(f"account-email:{digest}", settings.ACCOUNT_EMAIL_LIMIT)


def verification_token(user) -> str:
    return signing.dumps({"u": user.pk, "e": user.email.lower()}, salt=VERIFY_SALT)


def verification_token_read(token: str):
    """(user, email) for a valid, unexpired token whose address is still the account's."""
    try:
        data = signing.loads(token, salt=VERIFY_SALT, max_age=settings.EMAIL_VERIFICATION_MAX_AGE_S)
    except signing.SignatureExpired:
        raise VerificationError(
            _("This link has expired. Sign in and ask for a new one from the console.")
        ) from None
    except signing.BadSignature:
        raise VerificationError(
            _("This link is not valid. Copy the whole link from the email.")
        ) from None
    user = get_user_model().objects.filter(pk=data.get("u"), is_active=True).first()
    if user is None or not user.email or user.email.lower() != data.get("e"):
        raise VerificationError(
            _("This link is for an address the account no longer uses. Ask for a new one.")
        )
    return user, user.email


def _send_verification(user) -> None:
    link = _absolute(reverse("account_verify", kwargs={"token": verification_token(user)}))
    hours = settings.EMAIL_VERIFICATION_MAX_AGE_S // 3600
    body = "\n".join(
        [
            _("Confirm that %(email)s is the address of the researcher account %(username)s:")
            % {"email": user.email, "username": user.get_username()},
            link,
            "",
            _("The link works for %(hours)s hours.") % {"hours": hours},
            _("If you did not create this account, ignore this email: nothing happens."),
        ]
    )
    send_mail(_("Confirm your email address"), body, None, [user.email])


def _send_signup_notice(user) -> None:
    body = "\n".join(
        [
            _(
                "Someone tried to create a researcher account with this email address, which "
                "already has an account (username: %(username)s)."
            )
            % {"username": user.get_username()},
            "",
            _("If it was you, sign in:"),
            _absolute(reverse("login")),
            _("or, if you forgot your password, reset it:"),
            _absolute(reverse("password_reset")),
            "",
            _("If it was not you, you can ignore this email: no account was created."),
        ]
    )
    send_mail(_("Someone tried to sign up with your address"), body, None, [user.email])


def account_signup(*, username: str, email: str, password: str, client_key: str):
    """Open a researcher account with an unverified address and email it a verification link.

    If an account already verified the address, nothing is created and its owner is told by
    email; the caller shows the same "check your email" answer in both cases. An address merely
    typed into another, unverified account does not block sign-up: whoever registered someone
    else's address first never receives its verification link, so the real owner must still be
    able to open an account with it. Returns the new user or
    None. Raises SignUpError("throttled") when this client opened too many accounts this hour,
    or SignUpError("username_taken") when a concurrent sign-up took the username.
    """
    if rate_limited(f"signup-client:{client_key}", settings.SIGNUP_CLIENT_LIMIT):
        raise SignUpError(
            "throttled", _("Too many sign-ups from your network. Try again in an hour.")
        )
    User = get_user_model()
    existing = verified_owner_of(email)
    if existing is not None:
        # Hash anyway, so both answers take about as long as each other.
        make_password(password)
        audit_record(actor="anonymous", action="account.signup_existing_email", target=existing)
        if _address_allows_email(email):
            _send_signup_notice(existing)
        return None
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, email=email, password=password)
            audit_record(actor=user, action="account.signup", target=user)
    except IntegrityError:
        raise SignUpError(
            "username_taken", _("A user with that username already exists.")
        ) from None
    if _address_allows_email(email):
        _send_verification(user)
    return user


def email_verification_resend(*, user) -> bool:
    """Send a fresh verification link; False when the hourly cap for the address is reached."""
    if email_is_verified(user) or not user.email:
        return False
    if not _address_allows_email(user.email):
        return False
    _send_verification(user)
    audit_record(actor=user, action="account.verification_resend", target=user)
    return True


def verified_owner_of(email: str):
    """The active account that verified `email` (at most one can), or None."""
    record = (
        EmailVerification.objects.select_related("user")
        .filter(email__iexact=email, user__is_active=True, user__email__iexact=email)
        .first()
    )
    if record is not None:
        return record.user
    # Superusers count as verified without a record.
    return (
        get_user_model()
        .objects.filter(email__iexact=email, is_active=True, is_superuser=True)
        .order_by("pk")
        .first()
    )


@transaction.atomic
def email_mark_verified(*, user, method: str, actor) -> EmailVerification:
    """Record that `user` receives mail at its current address (idempotent).

    An address is verified for one account only: invitations go to addresses, so two verified
    accounts sharing one would make "the account for this address" ambiguous.
    """
    if not user.email:
        raise VerificationError(_("The account has no email address to verify."))
    owner = verified_owner_of(user.email)
    if owner is not None and owner.pk != user.pk:
        raise VerificationError(
            _(
                "This address is already confirmed for another account (%(username)s). Sign in "
                "to that account, or reset its password if you forgot it."
            )
            % {"username": owner.get_username()}
        )
    record, _created = EmailVerification.objects.update_or_create(
        user=user,
        defaults={"email": user.email, "method": method, "verified_at": timezone.now()},
    )
    user.email_verification = record
    audit_record(
        actor=actor,
        action="account.email_verified",
        target=user,
        data={"email": user.email, "method": method},
    )
    return record


def email_verify(*, token: str):
    """Verify the address a link was sent to; returns the user. Raises VerificationError."""
    user, _email = verification_token_read(token)
    if not email_is_verified(user):
        email_mark_verified(user=user, method=EmailVerification.Method.LINK, actor=user)
    return user


def password_reset_allowed(*, email: str, client_key: str) -> bool:
    """Count one reset request for the address and for the client; False beyond either cap.

    Both counters move whether or not the address has an account, so the cap itself reveals
    nothing; the caller answers the same either way.
    """
    digest = lookup_digest(email, "email")
    by_address = rate_limited(f"reset-email:{digest}", settings.PASSWORD_RESET_EMAIL_LIMIT)
    by_client = rate_limited(f"reset-client:{client_key}", settings.PASSWORD_RESET_CLIENT_LIMIT)
    if by_address or by_client:
        log.warning("password reset throttled (%s)", "address" if by_address else "client")
        return False
    return True
