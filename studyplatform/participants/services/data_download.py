"""Download my data: the participant's own archive.

A data download holds the participant's e-mail, panel id, typed name and chats, so it never
touches the disk in clear: the zip is built in memory, written encrypted with the platform's
field-encryption keys (core.filecrypt), decrypted chunk by chunk while it streams to its owner,
and deleted DATA_DOWNLOAD_EXPIRY_HOURS after it was built (or at withdrawal with deletion).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from studyplatform.core.events import (
    ParticipantDownloadFilesRequested,
    ParticipantDownloadRequested,
    publish,
)
from studyplatform.core.filecrypt import DecryptionError, decrypt_from_path, encrypt_to_path
from studyplatform.core.leases import (
    Lease,
    LeaseLost,
    fault_injection_pause,
    job_claim,
)

from ..models import DataDownload, Identity, Participant

log = logging.getLogger(__name__)

DOWNLOAD_DIR = "downloads"


def remove_download_file(name: str) -> None:
    if name:
        (Path(settings.MEDIA_ROOT) / DOWNLOAD_DIR / name).unlink(missing_ok=True)


def download_path(download: DataDownload) -> Path:
    return Path(settings.MEDIA_ROOT) / DOWNLOAD_DIR / download.file_name


def download_expiry_hours() -> int:
    return int(getattr(settings, "DATA_DOWNLOAD_EXPIRY_HOURS", 72))


class DownloadGone(Exception):
    pass


def data_download_open(
    *, download: DataDownload, now: dt.datetime | None = None
) -> Iterator[bytes]:
    """The clear zip of a ready, unexpired download, decrypted chunk by chunk as it is read.

    The caller has checked that `download` belongs to the participant asking for it."""
    now = now or timezone.now()
    if not download.is_available(now) or not download.file_name:
        raise DownloadGone("this archive is no longer available")
    path = download_path(download)
    if not path.exists():
        raise DownloadGone("this archive is no longer available")
    try:
        return decrypt_from_path(path)
    except DecryptionError as exc:
        # A key removed from FIELD_ENCRYPTION_KEY too early, or a damaged file: the operator
        # needs to know; the participant can prepare a new archive.
        log.error("data download %s cannot be decrypted: %s", download.pk, exc)
        raise DownloadGone("this archive is no longer available") from exc


def data_downloads_expire_due(*, now: dt.datetime | None = None) -> int:
    """Delete the files of ready downloads past their expiry; the rows stay (status expired)."""
    now = now or timezone.now()
    count = 0
    due = DataDownload.objects.filter(status=DataDownload.Status.READY, expires_at__lte=now)
    for download in due.iterator(chunk_size=200):
        claimed = DataDownload.objects.filter(
            pk=download.pk, status=DataDownload.Status.READY
        ).update(status=DataDownload.Status.EXPIRED)
        if claimed == 1:
            remove_download_file(download.file_name)
            count += 1
    return count


@transaction.atomic
def data_download_request(*, participant: Participant) -> DataDownload:
    from ..tasks import build_data_download

    download = DataDownload.objects.create(participant=participant)
    transaction.on_commit(lambda: build_data_download.delay(download.pk))
    return download


def _participant_tables(participant: Participant) -> dict[str, list[dict[str, Any]]]:
    identity = Identity.objects.filter(participant=participant).first()
    protocol = participant.study.protocol
    disclose = protocol.get("allocation", {}).get("disclose_to_participant", False)
    tables: dict[str, list[dict[str, Any]]] = {
        "participant": [
            {
                "code": participant.code,
                "study": participant.study.slug,
                "status": participant.status,
                "language": participant.language,
                "timezone": participant.timezone,
                "enrolled_at": participant.enrolled_at.isoformat(),
                "screener_answers": participant.screener_answers,
            }
        ],
        "identity": [
            {
                "email": identity.email,
                "name": identity.name,
                "panel": identity.panel,
                "panel_id": identity.panel_pid,
            }
        ]
        if identity
        else [],
        "consent": [
            {
                "version": r.version,
                "language": r.language,
                "signed_at": r.signed_at.isoformat(),
                "text_sha256": r.text_hash,
                "choices": r.choices,
                "signature": r.signature_name,
            }
            for r in participant.consent_records.order_by("signed_at")
        ],
    }
    if disclose and hasattr(participant, "allocation"):
        a = participant.allocation
        tables["allocation"] = [{"arm": a.arm.key, "allocated_at": a.allocated_at.isoformat()}]
    # Apps holding participant data (chat, surveys) add their tables.
    for section in publish(ParticipantDownloadRequested(participant=participant)):
        tables.update(section)
    return tables


def _participant_files(participant: Participant) -> dict[str, Any]:
    """``{path inside the archive: reader}`` from the apps holding files (kept voice
    recordings)."""
    files: dict[str, Any] = {}
    for section in publish(ParticipantDownloadFilesRequested(participant=participant)):
        files.update(section)
    return files


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


def _csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet or another program can read back: nested values (survey
    answers, scores, consent choices) as JSON text, not Python's repr; true/false and empty
    for booleans and missing values, as in the JSON files."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: _csv_cell(v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def _readme(
    participant: Participant, tables: dict[str, list], now: dt.datetime, folders: list[str]
) -> str:
    """The archive's README, in the participant's language (the one they use the study in)."""
    with translation.override(participant.language or settings.LANGUAGE_CODE):
        lines = [
            _("Your data from the study: %(title)s") % {"title": participant.study.title_in()},
            _("Participant code: %(code)s") % {"code": participant.code},
            _("Prepared on %(when)s UTC.") % {"when": f"{now:%Y-%m-%d %H:%M}"},
            "",
            _(
                "This archive holds everything the study keeps about you. Each table is given "
                "twice: as a CSV file, which opens in a spreadsheet, and as a JSON file, for "
                "programs. data.json holds all the tables together."
            ),
            _(
                "In the CSV files, values that contain several parts (such as your answers to "
                "a questionnaire) are written as JSON text."
            ),
            "",
            _("Tables:"),
        ]
        lines += [f"  {name}.csv, {name}.json" for name in tables]
        if "voice" in folders:
            lines += [
                "",
                _(
                    "voice/ holds the recordings of what you said in the chat, kept because "
                    "you agreed to it in the consent form. Each file is named after the "
                    "message it was transcribed into (message_id in voice_recordings.csv)."
                ),
            ]
    return "\n".join(lines) + "\n"


def data_download_claim(download_id: int, *, owner: str | None = None) -> Lease | None:
    """Claim a pending download, or take over one whose worker died (expired lease); the lease
    only for the one caller that did it. See studyplatform/core/leases.py."""
    return job_claim(DataDownload, download_id, owner=owner)


def _part_name(download_id: int) -> str:
    # Written under a per-attempt name and renamed into place only by the lease holder, so a
    # taken-over attempt never leaves a second archive behind.
    return f"{download_id}-{secrets.token_hex(8)}.part"


def _remove_dead_parts(download_id: int, keep: Path) -> None:
    for path in (Path(settings.MEDIA_ROOT) / DOWNLOAD_DIR).glob(f"{download_id}-*.part"):
        if path != keep:
            path.unlink(missing_ok=True)


def data_download_build(*, download: DataDownload, lease: Lease | None = None) -> DataDownload:
    """Write the archive: every table as JSON and CSV, the participant's files (kept voice
    recordings), and a README."""
    if lease is None:
        lease = data_download_claim(download.pk)
        if lease is None:
            return DataDownload.objects.get(pk=download.pk)
    participant = download.participant
    part = Path(settings.MEDIA_ROOT) / DOWNLOAD_DIR / _part_name(download.pk)
    try:
        fault_injection_pause()
        lease.require()
        tables = _participant_tables(participant)
        files = _participant_files(participant)
        folders = sorted({name.split("/", 1)[0] for name in files if "/" in name})
        # Built in memory and written only encrypted: the clear zip never touches the disk.
        # An unguessable name that says nothing about whose it is.
        name = f"{secrets.token_hex(16)}.zip.fernet"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("README.txt", _readme(participant, tables, timezone.now(), folders))
            archive.writestr("data.json", _json(tables))
            for table, rows in tables.items():
                archive.writestr(f"{table}.csv", _csv(rows))
                archive.writestr(f"{table}.json", _json(rows))
            for path, read in files.items():
                # Audio is compressed already: stored as it is, one file in memory at a time.
                archive.writestr(path, read(), compress_type=zipfile.ZIP_STORED)
        data = buffer.getvalue()
        encrypt_to_path(data, part)
        _remove_dead_parts(download.pk, keep=part)
        _data_download_finish(lease=lease, part=part, name=name, sha256=hashlib.sha256(data))
    except LeaseLost:
        log.warning("data download %s: lease lost; this attempt stops", download.pk)
    except Exception as exc:  # the participant sees "failed, try again"; we keep the reason
        log.exception("data download %s failed", download.pk)
        lease.fail(f"{exc.__class__.__name__}: {exc}")
    finally:
        part.unlink(missing_ok=True)
    download.refresh_from_db()
    return download


@transaction.atomic
def _data_download_finish(*, lease: Lease, part: Path, name: str, sha256) -> None:
    """Rename the archive into place and mark it ready, only while this worker holds the lease
    (the row lock keeps a takeover from finishing at the same moment)."""
    row = DataDownload.objects.select_for_update().get(pk=lease.pk)
    if not lease.owns(row):
        raise LeaseLost(f"data download {lease.pk}: lease of {lease.owner} lost")
    final = Path(settings.MEDIA_ROOT) / DOWNLOAD_DIR / name
    os.replace(part, final)
    try:
        now = timezone.now()
        finished = lease.finish(
            status=DataDownload.Status.READY,
            file_name=name,
            sha256=sha256.hexdigest(),
            expires_at=now + dt.timedelta(hours=download_expiry_hours()),
            finished_at=now,
        )
        if not finished:
            raise LeaseLost(f"data download {lease.pk}: lease of {lease.owner} lost")
    except BaseException:
        final.unlink(missing_ok=True)
        raise
