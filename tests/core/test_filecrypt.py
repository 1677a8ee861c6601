"""Files encrypted at rest in chunks: round trip, key rotation, and refusal of tampered files."""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet

from studyplatform.core import filecrypt
from studyplatform.core.filecrypt import DecryptionError, decrypt_from_path, encrypt_to_path


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(filecrypt, "CHUNK", 16)


def test_a_file_is_written_encrypted_and_streams_back_in_chunks(tmp_path, small_chunks):
    # given
    data = os.urandom(50) + b"maria@example.org"
    path = tmp_path / "a.fernet"
    # when
    encrypt_to_path(data, path)
    # then: nothing in clear on disk, and the clear bytes come back chunk by chunk
    assert b"maria@example.org" not in path.read_bytes()
    chunks = list(decrypt_from_path(path))
    assert b"".join(chunks) == data and len(chunks) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["a.fernet"]  # no partial file left


def test_an_empty_file_round_trips(tmp_path):
    encrypt_to_path(b"", tmp_path / "e")
    assert b"".join(decrypt_from_path(tmp_path / "e")) == b""


def test_files_written_under_an_old_key_still_decrypt_after_rotation(tmp_path, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    encrypt_to_path(b"hello", tmp_path / "r")
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert b"".join(decrypt_from_path(tmp_path / "r")) == b"hello"
    settings.FIELD_ENCRYPTION_KEYS = [new]
    with pytest.raises(DecryptionError, match="configured keys"):
        decrypt_from_path(tmp_path / "r")


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda lines: [lines[1], lines[0], *lines[2:]], "out of order"),
        (lambda lines: lines[:-1], "cut short"),
        (lambda lines: [*lines, lines[-1]], "after the last chunk"),
        (lambda lines: [lines[0][:-5] + b"AAAA\n", *lines[1:]], "configured keys"),
    ],
)
def test_a_tampered_file_is_refused(tmp_path, small_chunks, tamper, message):
    # given: a three-chunk file whose lines are altered
    path = tmp_path / "t"
    encrypt_to_path(b"x" * 40, path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(tamper(lines)))
    # when / then
    with pytest.raises(DecryptionError, match=message):
        b"".join(decrypt_from_path(path))
