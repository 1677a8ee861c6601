"""Encrypted model fields: chat content and free-text answers are encrypted at rest.

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`, with MultiFernet so keys can rotate:
FIELD_ENCRYPTION_KEY holds comma-separated keys, the first encrypts, any decrypts.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
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


class DecryptedTexts:
    """The plain texts of tokens this process decrypted recently, by token, for code that
    decrypts the same tokens again and again: the chat send decrypts the conversation's history
    for the model request on every message (chat.services.build_request), so a conversation of
    n messages cost n decryptions per send (~10 us each warm, several times that on a cold CPU).

    A token is one encryption of one text (a fresh IV each time), so a token always stands for
    the same text: an edited or deleted text is a new token (or none) and is never answered
    from here. Bounded twice: at most `max_chars` characters of tokens and texts together (the
    least recently used dropped first; 0 keeps nothing), and an entry unused for `max_age_s` is
    dropped at the next lookup of any token, so in a process that is sending, the text of a
    conversation nobody is sending to does not stay for long (nothing drops it in a process
    that looks nothing up). Safe to share between threads."""

    def __init__(self, *, max_chars: int, max_age_s: float) -> None:
        self.max_chars = max_chars
        self.max_age_s = max_age_s
        # token -> (text, last used, size); least recently used first
        self._texts: OrderedDict[str, tuple[str, float, int]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def decrypt(self, token: str) -> str:
        now = time.monotonic()
        with self._lock:
            self._drop_unused(now)
            kept = self._texts.get(token)
            if kept is not None:
                self._texts[token] = (kept[0], now, kept[2])
                self._texts.move_to_end(token)
                return kept[0]
        text = decrypt_str(token)
        size = len(token) + len(text)
        if size <= self.max_chars:
            with self._lock:
                if token not in self._texts:
                    self._texts[token] = (text, now, size)
                    self._chars += size
                    while self._chars > self.max_chars:
                        self._chars -= self._texts.popitem(last=False)[1][2]
        return text

    def _drop_unused(self, now: float) -> None:
        while self._texts:
            token, (_, used, size) = next(iter(self._texts.items()))
            if now - used <= self.max_age_s:
                return
            del self._texts[token]
            self._chars -= size

    @property
    def chars(self) -> int:
        return self._chars

    def __len__(self) -> int:
        return len(self._texts)

    def clear(self) -> None:
        with self._lock:
            self._texts.clear()
            self._chars = 0


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
