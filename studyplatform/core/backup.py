"""Backing up and restoring the platform: a consistent database snapshot, the media root and a
manifest, never the keys.

A backup directory holds:
  manifest.json      what was backed up (see `MANIFEST_FORMAT`), with a sha256 of every file
  database.sqlite3   SQLite: a snapshot taken with SQLite's online backup API
  database.pgdump    PostgreSQL: `pg_dump --format=custom`, taken inside one exported snapshot
  media/...          the media root (exports, analysis reports, encrypted data downloads)

The keys (SECRET_KEY, FIELD_ENCRYPTION_KEY) are deliberately left out: a backup that carried
them would hand whoever holds a copy every chat message in clear. The operator keeps them apart
(README "Backup and restore"); the manifest carries a Fernet token of a fixed text so a restore
can tell, before touching anything, whether the configured keys can read this backup.

Restoring goes into an EMPTY database of the same vendor (nothing but what `migrate` itself
writes), after every file's sha256 has been checked and the backup's migrations are known to
this code; `migrate` then brings an older backup up to date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils.crypto import constant_time_compare, salted_hmac

from .audit import audit_record
from .fields import decrypt_str, encrypt_str

MANIFEST_FORMAT = "studyplatform-backup/1"
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
MEDIA_DIR = "media"
# Tables `migrate` fills on an empty database; a restore target may hold these and still be empty.
MIGRATE_BOOKKEEPING = {"django_migrations", "django_content_type", "auth_permission"}
# What must be kept apart from every backup. The first two are needed to read it at all; the
# others are listed so an operator re-creating the machine knows what else to carry over.
KEYS_NOT_INCLUDED = ["SECRET_KEY", "FIELD_ENCRYPTION_KEY"]
KEY_CHECK_TEXT = "studyplatform backup key check"
_HASH_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


@dataclass
class BackupResult:
    dest: Path
    manifest: dict[str, Any]
    keys_not_included: list[str] = field(default_factory=lambda: list(KEYS_NOT_INCLUDED))


# ---------------------------------------------------------------------------------------------
# Shared helpers


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _platform_version() -> str:
    try:
        data = tomllib.loads((Path(settings.BASE_DIR) / "pyproject.toml").read_text())
        return str(data["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return ""


def _git_commit() -> str:
    git = shutil.which("git")
    if not git:
        return ""
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [git, "rev-parse", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _migrations_in(cursor) -> dict[str, list[str]]:
    """The applied migrations recorded in the snapshot itself (a raw DB-API cursor)."""
    applied: dict[str, list[str]] = {}
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    for app, name in cursor.fetchall():
        applied.setdefault(app, []).append(name)
    return applied


def _user_tables() -> list[str]:
    with connection.cursor() as cursor:
        return sorted(connection.introspection.table_names(cursor))


def _count_rows(cursor, tables: list[str], quote) -> dict[str, int]:
    counts = {}
    for table in tables:
        cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")  # noqa: S608 - introspected names
        counts[table] = cursor.fetchone()[0]
    return counts


def _dest_ready(dest: Path) -> None:
    media_root = Path(settings.MEDIA_ROOT).resolve()
    if dest.resolve().is_relative_to(media_root):
        # The media root is copied into DEST: a DEST inside it would copy itself.
        raise BackupError(
            f"DEST {dest} is inside MEDIA_ROOT ({media_root}); choose a path outside it."
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(
            f"DEST {dest} already exists and is not an empty directory; "
            "give a new path so no earlier backup is overwritten."
        )


# ---------------------------------------------------------------------------------------------
# Backup


def _sqlite_snapshot(target: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Copy the live database with SQLite's online backup API. One step (pages=-1) holds a read
    transaction for the whole copy, so the snapshot is consistent even while the web server and
    workers write (WAL mode lets them carry on meanwhile)."""
    source = connection.get_new_connection(connection.get_connection_params())
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination, pages=-1)
            # Counted from the snapshot itself, so the manifest describes exactly this file.
            names = [
                row[0]
                for row in destination.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            cursor = destination.cursor()
            counts = _count_rows(cursor, names, lambda t: '"' + t.replace('"', '""') + '"')
            return counts, _migrations_in(cursor)
        finally:
            destination.close()
    finally:
        source.close()


def _pg_env() -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    for key, value in (
        ("PGHOST", db.get("HOST")),
        ("PGPORT", db.get("PORT")),
        ("PGUSER", db.get("USER")),
        ("PGPASSWORD", db.get("PASSWORD")),
        ("PGDATABASE", db.get("NAME")),
    ):
        if value:
            env[key] = str(value)
    return env


def _pg_connect():
    import psycopg

    db = connection.settings_dict
    params = {"dbname": db["NAME"]}
    for key in ("HOST", "PORT", "USER", "PASSWORD"):
        if db.get(key):
            params[key.lower()] = str(db[key])
    # Autocommit, so the transactions here are exactly the ones written out (psycopg would
    # otherwise open one at the first query, and a later BEGIN ISOLATION LEVEL would be ignored).
    return psycopg.connect(autocommit=True, **params)


def _pg_tool(name: str, server_major: int) -> str:
    """The path of pg_dump/pg_restore, refusing one older than the server: an older pg_dump
    refuses (or worse, half-understands) a newer server's catalogue."""
    path = shutil.which(name)
    if not path:
        raise BackupError(
            f"{name} was not found on PATH. Install the PostgreSQL client tools, version "
            f"{server_major} or newer (Debian: apt-get install postgresql-client-{server_major})."
        )
    out = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [path, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    if not match:
        raise BackupError(f"{path} --version did not report a version: {out.stdout!r}")
    major = int(match.group(1))
    if major < server_major:
        raise BackupError(
            f"{name} at {path} is version {major}, older than the database server "
            f"({server_major}). Install the PostgreSQL {server_major} client tools "
            f"(Debian: apt-get install postgresql-client-{server_major}) and put them on PATH."
        )
    return path


def _pg_server_major(conn) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def _pg_snapshot(target: Path) -> tuple[dict[str, int], dict[str, list[str]], int]:
    """pg_dump inside a snapshot this function exports: the row counts in the manifest and the
    dump see exactly the same committed data, whatever the platform writes meanwhile."""
    with _pg_connect() as conn:
        server_major = _pg_server_major(conn)
        pg_dump = _pg_tool("pg_dump", server_major)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        names = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "ORDER BY tablename"
            )
        ]
        counts = _count_rows(conn.cursor(), names, lambda t: '"' + t.replace('"', '""') + '"')
        migrations = _migrations_in(conn.cursor())
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                pg_dump,
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--snapshot={snapshot}",
                f"--file={target}",
            ],
            env=_pg_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        conn.execute("ROLLBACK")
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
    return counts, migrations, server_major


def backup_create(*, dest: Path, actor: Any = "manage.py backup") -> BackupResult:
    """Write a backup of the database and the media root into `dest` (new or empty)."""
    dest = Path(dest)
    _dest_ready(dest)
    vendor = connection.vendor
    if vendor not in ("sqlite", "postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL, not {vendor}")
    dest.mkdir(parents=True, exist_ok=True)
    database: dict[str, Any] = {"vendor": vendor}
    try:
        if vendor == "sqlite":
            database["file"] = SQLITE_FILE
            counts, migrations = _sqlite_snapshot(dest / SQLITE_FILE)
        else:
            database["file"] = PG_FILE
            counts, migrations, database["server_major"] = _pg_snapshot(dest / PG_FILE)
        media_root = Path(settings.MEDIA_ROOT)
        if media_root.is_dir():
            shutil.copytree(media_root, dest / MEDIA_DIR, symlinks=False)
    except BaseException:
        # Nothing half-written is left for someone to mistake for a backup.
        shutil.rmtree(dest, ignore_errors=True)
        raise
    files = {p.relative_to(dest).as_posix(): sha256_of(p) for p in _files_under(dest)}
    manifest = {
        "format": MANIFEST_FORMAT,
        "platform_version": _platform_version(),
        "git_commit": _git_commit(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "database": database,
        "migrations": migrations,
        "row_counts": counts,
        "files": files,
        "keys_not_included": KEYS_NOT_INCLUDED,
        "key_check": encrypt_str(KEY_CHECK_TEXT),
        "secret_key_check": _secret_key_check(),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    audit_record(
        actor=actor,
        action="platform.backup",
        data={
            "dest": str(dest),
            "vendor": vendor,
            "tables": len(counts),
            "rows": sum(counts.values()),
            "files": len(files),
        },
    )
    return BackupResult(dest=dest, manifest=manifest)


# ---------------------------------------------------------------------------------------------
# Restore


def read_manifest(src: Path) -> dict[str, Any]:
    path = Path(src) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} is not a backup: {MANIFEST} is missing") from None
    except ValueError as exc:
        raise BackupError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError(f"{path}: format must be {MANIFEST_FORMAT!r}")
    return manifest


def verify_files(src: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is present with its sha256, and no other file is."""
    src = Path(src)
    listed = manifest.get("files") or {}
    present = {p.relative_to(src).as_posix() for p in _files_under(src)} - {MANIFEST}
    problems = [f"{name}: missing" for name in sorted(set(listed) - present)]
    problems += [f"{name}: not in the manifest" for name in sorted(present - set(listed))]
    for name in sorted(set(listed) & present):
        if sha256_of(src / name) != listed[name]:
            problems.append(f"{name}: sha256 does not match the manifest (damaged or altered)")
    if problems:
        listing = "\n  ".join(problems)
        raise BackupError(f"the backup failed verification; nothing was restored:\n  {listing}")


def _secret_key_check() -> str:
    """An HMAC of a fixed text under SECRET_KEY: tells a restore whether SECRET_KEY is the one
    the backup was written with (e-mail look-up digests and tokens are keyed by it) without
    revealing anything about the key."""
    return salted_hmac("studyplatform.backup", KEY_CHECK_TEXT, algorithm="sha256").hexdigest()


def check_keys(manifest: dict[str, Any]) -> None:
    try:
        ok = decrypt_str(manifest.get("key_check", "")) == KEY_CHECK_TEXT
    except (ImproperlyConfigured, ValueError, TypeError):
        # A token the configured keys cannot open (or no token at all): the wrong keys.
        ok = False
    if not ok:
        raise BackupError(
            "FIELD_ENCRYPTION_KEY does not hold the key this backup was written with, so its "
            "chat messages and free-text answers could not be read. Set FIELD_ENCRYPTION_KEY "
            "(and SECRET_KEY) to the values kept with the backup; nothing was restored."
        )
    if not constant_time_compare(manifest.get("secret_key_check", ""), _secret_key_check()):
        raise BackupError(
            "SECRET_KEY is not the one this backup was written with, so participants' e-mail "
            "look-ups and outstanding links would stop working. Set SECRET_KEY to the value "
            "kept with the backup; nothing was restored."
        )


def check_migrations(manifest: dict[str, Any]) -> None:
    """Refuse a backup written by newer code: migrations this code does not have would leave
    tables this code does not understand. An older backup is fine (migrate runs afterwards)."""
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    unknown = [
        f"{app}.{name}"
        for app, names in sorted((manifest.get("migrations") or {}).items())
        for name in names
        if (app, name) not in known
    ]
    if unknown:
        raise BackupError(
            "the backup comes from newer code than this installation (migrations unknown here: "
            + ", ".join(unknown)
            + "). Restore it with the platform version that wrote it "
            f"({manifest.get('platform_version') or '?'}, commit "
            f"{manifest.get('git_commit') or '?'}) or newer."
        )


def check_empty_database() -> None:
    tables = [t for t in _user_tables() if t not in MIGRATE_BOOKKEEPING]
    with connection.cursor() as cursor:
        counts = _count_rows(cursor, tables, connection.ops.quote_name)
    filled = [f"{table} ({n})" for table, n in counts.items() if n]
    if filled:
        raise BackupError(
            "restore only writes into an empty database, and these tables have rows: "
            + ", ".join(filled)
            + ". Create a new database (or SQLite file), point DATABASE_URL at it and run "
            "restore again."
        )


def _check_media_empty() -> None:
    media_root = Path(settings.MEDIA_ROOT)
    if media_root.is_dir() and _files_under(media_root):
        raise BackupError(
            f"MEDIA_ROOT {media_root} already holds files; restore into an empty media root "
            "(move the existing files away first)."
        )


def _sqlite_restore(snapshot: Path) -> None:
    """Write the snapshot into the configured database with the backup API (in the other
    direction): SQLite replaces the whole database under its own locks, WAL file included,
    which a file copy over a live database would not."""
    connection.close()
    target = connection.get_new_connection(connection.get_connection_params())
    try:
        source = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
        try:
            source.backup(target, pages=-1)
        finally:
            source.close()
    finally:
        target.close()


def _pg_restore(dump: Path) -> None:
    with _pg_connect() as conn:
        pg_restore = _pg_tool("pg_restore", _pg_server_major(conn))
        # The target was checked empty; the tables `migrate` created there (possibly by newer
        # code) go, so the dump's schema and django_migrations are the only truth.
        names = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        if names:
            quoted = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
            conn.execute(f"DROP TABLE {quoted} CASCADE")
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [
            pg_restore,
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={connection.settings_dict['NAME']}",
            str(dump),
        ],
        env=_pg_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed (nothing was restored): {result.stderr.strip()}")
    connection.close()


def restore_from(*, src: Path, actor: Any = "manage.py restore", migrate: bool = True) -> dict:
    """Restore a backup into the configured (empty) database and media root. Every check runs
    before anything is written."""
    src = Path(src)
    manifest = read_manifest(src)
    database = manifest.get("database") or {}
    vendor = database.get("vendor")
    if vendor != connection.vendor:
        raise BackupError(
            f"this backup is of a {vendor} database and the configured database is "
            f"{connection.vendor}; restore into the same kind of database (cross-database "
            "restores are not supported)."
        )
    verify_files(src, manifest)
    check_keys(manifest)
    check_migrations(manifest)
    check_empty_database()
    _check_media_empty()

    if vendor == "sqlite":
        _sqlite_restore(src / database["file"])
    else:
        _pg_restore(src / database["file"])
    with connection.cursor() as cursor:
        restored = _count_rows(cursor, _user_tables(), connection.ops.quote_name)
    expected = manifest.get("row_counts") or {}
    differences = [
        f"{table}: {restored.get(table)} rows, the manifest says {n}"
        for table, n in sorted(expected.items())
        if restored.get(table) != n
    ]
    if differences:
        raise BackupError(
            "the restored database differs from the manifest: " + "; ".join(differences)
        )
    media_src = src / MEDIA_DIR
    if media_src.is_dir():
        shutil.copytree(media_src, Path(settings.MEDIA_ROOT), dirs_exist_ok=True)
    if migrate:
        call_command("migrate", interactive=False, verbosity=0)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="platform.restore",
            data={
                "src": str(src),
                "backup_created_at": manifest.get("created_at"),
                "vendor": vendor,
                "rows": sum(expected.values()),
                "files": len(manifest.get("files") or {}),
            },
        )
    return {"row_counts": restored, "manifest": manifest}
