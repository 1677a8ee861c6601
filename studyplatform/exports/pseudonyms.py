"""Keyed pseudonyms for exported rows: HMAC-SHA256 under a random per-export key.

Pure Python (no Django). An unsalted hash of an id or e-mail can be reversed by hashing every
candidate, so pseudonyms are keyed: without the 32-byte key nobody can recompute them, and two
exports with different keys cannot be joined row by row. Reusing a key on purpose (recorded in
the export's options) makes the same participant carry the same pseudonym in both exports.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_BYTES = 32
DIGEST_HEX = 16  # 64 bits: collisions are negligible for any study-sized table

PREFIXES: dict[str, str] = {
    "participant": "p_",
    "conversation": "c_",
    "message": "m_",
    "response": "r_",
}


def new_key() -> bytes:
    """A fresh random key for one export."""
    return secrets.token_bytes(KEY_BYTES)


def key_fingerprint(key: bytes) -> str:
    """SHA-256 of the key: shows whether two exports share a key without revealing it."""
    return hashlib.sha256(key).hexdigest()


class Pseudonymizer:
    """Maps (kind, internal id) to a stable pseudonym such as "p_3f9a0c1d2e4b5a69"."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"a pseudonym key needs at least {KEY_BYTES} bytes")
        self._key = key

    def __call__(self, kind: str, value: int | str | None) -> str | None:
        if value is None:
            return None
        # The kind is part of the message so message 7 and participant 7 never share a digest.
        message = f"{kind}:{value}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()[:DIGEST_HEX]
        return PREFIXES[kind] + digest
