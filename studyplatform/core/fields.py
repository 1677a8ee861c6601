"""Encrypted model fields: chat content and free-text answers are encrypted at rest.

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`, with MultiFernet so keys can rotate:
FIELD_ENCRYPTION_KEY holds comma-separated keys, the first encrypts, any decrypts.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY must be comma-separated url-safe base64 Fernet keys."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt_str(value: str) -> str:
    return fernet().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt_str(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored value could not be decrypted: FIELD_ENCRYPTION_KEY does not contain the "
            "key it was written with."
        ) from exc


class EncryptedTextField(models.TextField):
    """A text column whose database value is a Fernet token. Not searchable by design."""

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None:
            return None
        return encrypt_str(value)

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return decrypt_str(value)


class EncryptedJSONField(models.TextField):
    """A JSON value stored as an encrypted token (free-text survey answers, vault extras)."""

    def get_prep_value(self, value):
        import json

        if value is None:
            return None
        return encrypt_str(json.dumps(value, ensure_ascii=False, sort_keys=True))

    def from_db_value(self, value, expression, connection):
        import json

        if value is None:
            return None
        return json.loads(decrypt_str(value))

    def to_python(self, value):
        return value
