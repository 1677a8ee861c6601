"""Backup and restore: `manage.py backup` of a study with participants, encrypted chats, survey
answers and an export file, restored by `manage.py restore` into a fresh empty database (a new
SQLite file, or a new PostgreSQL database this test creates), checked table by table; and every
refusal (non-empty DEST or database, damaged files, wrong keys, newer migrations, other vendor,
missing or old pg_dump) with the error the operator sees."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from studyplatform.chat.models import Message
from studyplatform.chat.services import conversation_create, message_send
from studyplatform.core.backup import MANIFEST
from studyplatform.core.models import AuditEvent
from studyplatform.exports.models import DatasetExport
from studyplatform.exports.services import export_build, export_create, export_path
from surveys.engine import schedule_tick
from surveys.models import Invitation
from surveys.services import response_save

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["I have been talking to the bot every night", "Olá, hoje foi um dia difícil"]
ANSWERS = {
    **{f"who5_{i}": 3 for i in range(1, 6)},
    **{f"ucla3_{i}": 1 for i in range(1, 4)},
    **{f"phq9_{i}": 0 for i in range(1, 10)},
}


@pytest.fixture
def world(recruiting_study, enroll, owner, settings, tmp_path, django_capture_on_commit_callbacks):
    """Two participants who chatted and answered their baseline, and one built export zip."""
    settings.MEDIA_ROOT = tmp_path / "media"
    participants = [enroll(recruiting_study) for _ in range(2)]
    schedule_tick(now=timezone.now())
    for participant, text in zip(participants, TEXTS, strict=True):
        conversation = conversation_create(participant=participant)
        message_send(participant=participant, conversation=conversation, text=text)
        invitation = Invitation.objects.get(participant=participant, entry_key="baseline")
        for key in invitation.instruments:
            answers = {k: v for k, v in ANSWERS.items() if k.startswith(key)}
            response_save(invitation=invitation, instrument_key=key, answers=answers, submit=True)
    export = export_create(study=recruiting_study, user=owner, options={}, enqueue=False)
    export = export_build(export=export)
    assert export.status == DatasetExport.Status.DONE, export.error
    return {"study": recruiting_study, "export": export}


def table_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        counts = {}
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            counts[table] = cursor.fetchone()[0]
        return counts


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


class FreshDatabase:
    """A new empty database of the test's vendor, outside pytest-django's control: a new SQLite
    file, or a PostgreSQL database created with the role's CREATEDB and dropped afterwards."""

    def __init__(self, tmp_path: Path):
        self.vendor = connection.vendor
        db = connection.settings_dict
        if self.vendor == "sqlite":
            self.path = tmp_path / "restored.sqlite3"
            self.url = f"sqlite:///{self.path}"
        else:
            self.name = f"sp_restore_{uuid.uuid4().hex[:12]}"
            self.params = {
                "host": db["HOST"] or "127.0.0.1",
                "port": str(db["PORT"] or 5432),
                "user": db["USER"],
                "password": db["PASSWORD"],
            }
            p = self.params
            self.url = f"postgres://{p['user']}:{p['password']}@{p['host']}:{p['port']}/{self.name}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(dbname="postgres", autocommit=True, **self.params) as conn:
            conn.execute(sql)

    def __enter__(self) -> FreshDatabase:
        if self.vendor == "postgresql":
            self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc) -> None:
        if self.vendor == "postgresql":
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def query(self, sql: str) -> list[tuple]:
        if self.vendor == "sqlite":
            with sqlite3.connect(self.path) as conn:
                return conn.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(dbname=self.name, **self.params) as conn:
            return conn.execute(sql).fetchall()

    def counts(self) -> dict[str, int]:
        if self.vendor == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        else:
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        count = 'SELECT COUNT(*) FROM "{}"'
        return {t: self.query(count.format(t))[0][0] for (t,) in self.query(sql)}


def platform_env(database_url: str, media_root: Path, keys: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DEBUG="true",
        DATABASE_URL=database_url,
        MEDIA_ROOT=str(media_root),
        VAR_DIR=str(media_root.parent),
        FIELD_ENCRYPTION_KEY=",".join(keys),
        SECRET_KEY=django_settings.SECRET_KEY,
        REDIS_URL=django_settings.REDIS_URL,
    )
    return env


def test_a_backup_restores_into_a_fresh_database_with_every_row_and_readable_chats(
    world, settings, tmp_path
):
    # given: a study with participants, encrypted chats, survey answers and an export zip
    export = world["export"]
    source_counts = table_counts()
    assert source_counts["chat_message"] >= 2 and source_counts["surveys_response"] >= 6
    export_bytes = export_path(export).read_bytes()
    # when: it is backed up
    dest = tmp_path / "backup"
    call_command("backup", str(dest))
    manifest = json.loads((dest / MANIFEST).read_text())
    # then: the manifest describes the snapshot, and the backup was audited
    assert manifest["database"]["vendor"] == connection.vendor
    assert manifest["row_counts"] == source_counts
    assert "0001_initial" in manifest["migrations"]["chat"]
    assert f"media/exports/{export.file_name}" in manifest["files"]
    assert AuditEvent.objects.filter(action="platform.backup").count() == 1

    # when: it is restored into a fresh (migrated, empty) database and media root, same keys
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    with FreshDatabase(tmp_path) as fresh:
        media = tmp_path / "restored-media"
        env = platform_env(fresh.url, media, keys)
        # An operator's empty database has often been migrated already: that still counts as
        # empty (only migrate's own rows), and restore replaces its tables.
        migrated = manage("migrate", "-v0", env=env)
        assert migrated.returncode == 0, migrated.stderr
        result = manage("restore", str(dest), env=env)
        assert result.returncode == 0, result.stderr
        restored = fresh.counts()
        tokens = dict(fresh.query("SELECT id, content FROM chat_message WHERE role = 'user'"))
        actions = [a for (a,) in fresh.query("SELECT action FROM core_auditevent")]

    # then: every table holds the rows it held at backup time, plus the restore's audit event
    assert {t: n for t, n in restored.items() if t != "core_auditevent"} == {
        t: n for t, n in manifest["row_counts"].items() if t != "core_auditevent"
    }
    assert restored["core_auditevent"] == manifest["row_counts"]["core_auditevent"] + 1
    assert actions.count("platform.restore") == 1
    # and: the export file came back byte for byte
    assert (media / "exports" / export.file_name).read_bytes() == export_bytes
    # and: the chat text decrypts with the same keys, and not with any other key
    originals = {m.pk: m.content for m in Message.objects.filter(role="user")}
    assert sorted(originals.values()) == sorted(TEXTS)
    same = MultiFernet([Fernet(k.encode()) for k in keys])
    assert {pk: same.decrypt(t.encode()).decode() for pk, t in tokens.items()} == originals
    other = Fernet(Fernet.generate_key())
    for token in tokens.values():
        with pytest.raises(InvalidToken):
            other.decrypt(token.encode())


def test_the_backup_holds_no_key_and_the_command_names_the_keys_to_keep(
    world, settings, tmp_path, capsys
):
    # given: distinctive keys configured
    settings.SECRET_KEY = "k" * 20 + uuid.uuid4().hex
    # when: a backup is taken
    call_command("backup", str(tmp_path / "b"))
    # then: no file of it contains either key
    secrets = [settings.SECRET_KEY, *settings.FIELD_ENCRYPTION_KEYS]
    for path in (tmp_path / "b").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in secrets), path
    # and: the manifest and the output name what must be kept separately
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    assert manifest["keys_not_included"] == ["SECRET_KEY", "FIELD_ENCRYPTION_KEY"]
    assert "keep these environment variables separately" in capsys.readouterr().out


def test_backup_refuses_a_dest_that_is_not_empty(world, tmp_path):
    # given: a DEST holding an earlier file
    dest = tmp_path / "old"
    dest.mkdir()
    (dest / "keep.txt").write_text("earlier backup")
    # when / then: the command refuses and leaves it alone
    with pytest.raises(CommandError, match=r"DEST .*old already exists and is not an empty"):
        call_command("backup", str(dest))
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert not AuditEvent.objects.filter(action="platform.backup").exists()


def test_backup_refuses_a_dest_inside_the_media_root(world, settings):
    # given / when / then: a DEST that the media copy would copy into itself
    dest = Path(settings.MEDIA_ROOT) / "backups" / "today"
    with pytest.raises(CommandError, match=r"DEST .*today is inside MEDIA_ROOT"):
        call_command("backup", str(dest))
    assert not dest.exists()


@pytest.fixture
def backup_dir(world, tmp_path) -> Path:
    dest = tmp_path / "backup"
    call_command("backup", str(dest))
    return dest


def edit_manifest(dest: Path, change) -> None:
    manifest = json.loads((dest / MANIFEST).read_text())
    change(manifest)
    (dest / MANIFEST).write_text(json.dumps(manifest))


def test_restore_refuses_a_database_that_has_rows(backup_dir, settings, tmp_path):
    # given: the media root is empty, but the configured database is the one in use
    settings.MEDIA_ROOT = tmp_path / "empty-media"
    before = table_counts()
    # when / then: restore refuses, naming tables with rows, and changes nothing
    with pytest.raises(CommandError, match=r"only writes into an empty database.*chat_message \("):
        call_command("restore", str(backup_dir))
    assert table_counts() == before


def test_restore_checks_every_sha256_before_touching_anything(backup_dir, tmp_path):
    # given: an export file in the backup was altered
    # (the exports folder also holds the build area, .work/, which is a directory)
    [export_file] = [p for p in (backup_dir / "media" / "exports").iterdir() if p.is_file()]
    export_file.write_bytes(export_file.read_bytes() + b"x")
    before = table_counts()
    # when / then: the error names the file, and nothing was written
    with pytest.raises(CommandError, match=rf"media/exports/{export_file.name}: sha256 does not"):
        call_command("restore", str(backup_dir))
    assert table_counts() == before


def test_restore_refuses_keys_that_cannot_read_the_backup(backup_dir, settings):
    # given: a different FIELD_ENCRYPTION_KEY than the backup was written with
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    # when / then
    with pytest.raises(CommandError, match="FIELD_ENCRYPTION_KEY does not hold the key"):
        call_command("restore", str(backup_dir))


def test_restore_refuses_a_different_secret_key(backup_dir, settings):
    # given: the right field keys but another SECRET_KEY (e-mail digests are keyed by it)
    settings.SECRET_KEY = "another-secret-key-" + uuid.uuid4().hex
    # when / then
    with pytest.raises(CommandError, match="SECRET_KEY is not the one this backup"):
        call_command("restore", str(backup_dir))


def test_restore_refuses_a_backup_from_newer_migrations(backup_dir):
    # given: a backup whose chat app ran a migration this code does not have
    edit_manifest(backup_dir, lambda m: m["migrations"]["chat"].append("0999_from_the_future"))
    # when / then
    with pytest.raises(CommandError, match=r"newer code .*chat\.0999_from_the_future"):
        call_command("restore", str(backup_dir))


def test_restore_refuses_a_backup_of_another_database_vendor(backup_dir):
    # given: the manifest says the other vendor
    other = "postgresql" if connection.vendor == "sqlite" else "sqlite"
    edit_manifest(backup_dir, lambda m: m["database"].update(vendor=other))
    # when / then
    with pytest.raises(CommandError, match=rf"backup is of a {other} database .* not supported"):
        call_command("restore", str(backup_dir))


@pytest.mark.postgres_only
@pytest.mark.parametrize("fake", ["missing", "old"])
def test_backup_names_a_missing_or_too_old_pg_dump(world, tmp_path, monkeypatch, fake):
    if connection.vendor != "postgresql":
        pytest.skip("pg_dump is only used for PostgreSQL")
    # given: PATH offers no pg_dump, or one older than any server this platform supports
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if fake == "old":
        script = bin_dir / "pg_dump"
        script.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    # when / then: the error names the binary, and no backup directory is left behind
    message = "pg_dump was not found on PATH" if fake == "missing" else "pg_dump at .* version 9"
    with pytest.raises(CommandError, match=message):
        call_command("backup", str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
