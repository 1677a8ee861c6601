"""Files encrypted at rest with the platform's field-encryption keys, streamable on the way out.

Used for files that hold identifiable data and must sit on disk for a while (a participant's
"download my data" archive). Fernet with the keys of FIELD_ENCRYPTION_KEY (MultiFernet: the
first key encrypts, any listed key decrypts, so keys rotate as for encrypted fields).

Fernet encrypts a whole message at once, so a file is a sequence of chunks: one Fernet token per
line, each sealing up to CHUNK bytes prefixed with the chunk's sequence number and a flag for
the last chunk. Decryption yields the clear bytes chunk by chunk (memory stays at one chunk) and
fails if a chunk was altered, dropped, reordered or the file was cut short.
"""

from __future__ import annotations

import os
import secrets
import struct
from collections.abc import Iterator
from pathlib import Path

from cryptography.fernet import InvalidToken

from .fields import fernet

CHUNK = 1 << 20
_HEADER = struct.Struct(">Q?")  # sequence number, last chunk


class DecryptionError(Exception):
    """The file cannot be decrypted with the configured keys, or it was tampered with."""


def encrypt_to_path(data: bytes, path: Path) -> None:
    """Write `data` encrypted to `path`, atomically: a reader sees the whole file or none."""
    cipher = fernet()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        with partial.open("wb") as handle:
            count = max(1, -(-len(data) // CHUNK))
            for index in range(count):
                piece = data[index * CHUNK : (index + 1) * CHUNK]
                token = cipher.encrypt(_HEADER.pack(index, index == count - 1) + piece)
                handle.write(token + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _chunks(handle) -> Iterator[bytes]:
    cipher = fernet()
    expected = 0
    last = False
    try:
        for line in handle:
            if last:
                raise DecryptionError("data after the last chunk")
            try:
                clear = cipher.decrypt(line.rstrip(b"\n"))
            except InvalidToken as exc:
                raise DecryptionError("a chunk does not decrypt with the configured keys") from exc
            if len(clear) < _HEADER.size:
                raise DecryptionError("a chunk is too short to be ours")
            index, last = _HEADER.unpack_from(clear)
            if index != expected:
                raise DecryptionError("chunks out of order")
            expected += 1
            yield clear[_HEADER.size :]
        if not last:
            raise DecryptionError("the file is cut short")
    finally:
        handle.close()


def decrypt_from_path(path: Path) -> Iterator[bytes]:
    """The clear bytes of an encrypted file, chunk by chunk. The first chunk is decrypted before
    this returns, so a wrong key or a damaged file raises here, not halfway through a response."""
    chunks = _chunks(path.open("rb"))
    try:
        first = next(chunks)
    except StopIteration:
        raise DecryptionError("the file is empty") from None

    def stream() -> Iterator[bytes]:
        yield first
        yield from chunks

    return stream()
