"""Keyed digests for looking up identifiers without storing them in the clear.

HMAC-SHA256 keyed by SECRET_KEY with a purpose string: an unsalted hash of an email could be
reversed by guessing; a keyed one cannot without the key. Rotating SECRET_KEY invalidates the
look-ups (sign-in by email, returning panel ids), so rotate it together with a re-digest.
"""

from __future__ import annotations

import secrets
import unicodedata

from django.utils.crypto import salted_hmac


def normalize_identifier(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().casefold()


def lookup_digest(value: str, purpose: str) -> str:
    return salted_hmac(
        f"studyplatform.lookup.{purpose}", normalize_identifier(value), algorithm="sha256"
    ).hexdigest()


def new_token() -> str:
    """A URL-safe secret for links (return links, pilot invites)."""
    return secrets.token_urlsafe(24)


def token_digest(token: str) -> str:
    return salted_hmac("studyplatform.token", token, algorithm="sha256").hexdigest()
