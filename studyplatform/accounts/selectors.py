"""Reads about researcher accounts."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

from .models import EmailVerification


def email_is_verified(user) -> bool:
    """True when `user` proved it receives mail at its current address.

    Platform admins (superusers, made with `createsuperuser` or by another admin) count as
    verified: they already hold every permission, so an email check would protect nothing.
    """
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    try:
        record = user.email_verification
    except EmailVerification.DoesNotExist:
        return False
    return record.covers(user.email)


class EmailNotVerified(PermissionDenied):
    """An account without a verified address tried something that needs one (a 403 if uncaught)."""


def require_verified_email(user, message: str) -> None:
    if not email_is_verified(user):
        raise EmailNotVerified(message)
