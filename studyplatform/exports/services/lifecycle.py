"""The life of an export row: create (validate options, make or reuse the key, enqueue), build
(claim, run the builder, move the zip into place), download (audited) and expiry."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from studyplatform.core.audit import audit_record
from studyplatform.studies.models import Study

from .. import codebook as cb
from ..models import DatasetExport
from ..pseudonyms import key_fingerprint, new_key
from .builder import Builder, Progress
from .options import export_options_clean

log = logging.getLogger(__name__)

EXPORT_DIR = "exports"


class ExportNotReady(Exception):
    pass


class ExportGone(Exception):
    pass


def expiry_days() -> int:
    return int(getattr(settings, "EXPORT_EXPIRY_DAYS", 7))


def export_path(export: DatasetExport) -> Path:
    return Path(settings.MEDIA_ROOT) / EXPORT_DIR / export.file_name


@transaction.atomic
def export_create(
    *, study: Study, user: Any, options: Mapping[str, Any], enqueue: bool = True
) -> DatasetExport:
    """Record an export request and (after commit) queue its build on the exports queue."""
    clean = export_options_clean(study, options)
    source = None
    if clean["reuse_key_of"] is not None:
        source = DatasetExport.objects.get(study=study, pk=clean["reuse_key_of"])
        key_hex = source.key
    else:
        key_hex = new_key().hex()
    export = DatasetExport.objects.create(
        study=study,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        options=clean,
        reuse_key_of=source,
        key=key_hex,
        key_fingerprint=key_fingerprint(bytes.fromhex(key_hex)),
    )
    audit_record(
        actor=user,
        action="export.create",
        target=export,
        study_slug=study.slug,
        data={"options": clean, "key_fingerprint": export.key_fingerprint},
    )
    if enqueue:
        from ..tasks import build_export

        transaction.on_commit(lambda: build_export.delay(export.pk))
    return export


def export_download(*, export: DatasetExport, actor: Any, now: dt.datetime | None = None) -> Path:
    """The zip to stream, after writing the audit event (who, when, options, file hash)."""
    now = now or timezone.now()
    if export.is_expired(now):
        raise ExportGone("this export has expired and its file was deleted")
    if export.status != DatasetExport.Status.DONE:
        raise ExportNotReady(f"this export is {export.status}")
    path = export_path(export)
    if not path.exists():
        raise ExportGone("the export file is no longer available")
    audit_record(
        actor=actor,
        action="export.download",
        target=export,
        study_slug=export.study.slug,
        data={
            "options": export.options,
            "sha256": export.sha256,
            "size": export.size,
            "key_fingerprint": export.key_fingerprint,
        },
    )
    return path


def export_expire_due(*, now: dt.datetime | None = None) -> int:
    """Delete the files of finished exports past their expiry; the rows stay (status expired)."""
    now = now or timezone.now()
    count = 0
    due = DatasetExport.objects.filter(status=DatasetExport.Status.DONE, expires_at__lte=now)
    for export in due.iterator(chunk_size=200):
        claimed = DatasetExport.objects.filter(
            pk=export.pk, status=DatasetExport.Status.DONE
        ).update(status=DatasetExport.Status.EXPIRED)
        if claimed == 1:
            if export.file_name:
                export_path(export).unlink(missing_ok=True)
            audit_record(
                actor=None, action="export.expire", target=export, study_slug=export.study.slug
            )
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# Build


def export_build(*, export: DatasetExport, progress: Progress | None = None) -> DatasetExport:
    """Claim a pending export and build its zip. Safe to call twice: only one call claims it."""
    claimed = DatasetExport.objects.filter(
        pk=export.pk, status=DatasetExport.Status.PENDING
    ).update(status=DatasetExport.Status.RUNNING, progress=0)
    if claimed != 1:
        log.info("export %s already claimed", export.pk)
        return DatasetExport.objects.get(pk=export.pk)
    export.refresh_from_db()

    def report(percent: int, label: str) -> None:
        DatasetExport.objects.filter(pk=export.pk).update(progress=percent)
        if progress is not None:
            progress(percent, label)

    try:
        with tempfile.TemporaryDirectory(prefix="export-") as tmp:
            result = Builder(export, Path(tmp), report).run()
            directory = Path(settings.MEDIA_ROOT) / EXPORT_DIR
            directory.mkdir(parents=True, exist_ok=True)
            # An unguessable name: the file is only ever served through the audited view.
            name = f"{export.study.slug}-{secrets.token_hex(12)}.zip"
            shutil.move(str(result.zip_path), directory / name)
        now = timezone.now()
        export.file_name = name
        export.sha256 = cb.sha256_file(directory / name)
        export.size = (directory / name).stat().st_size
        export.detection_counts = dict(result.detection_counts)
        export.disclosure = result.disclosure
        export.status = DatasetExport.Status.DONE
        export.progress = 100
        export.finished_at = now
        export.expires_at = now + dt.timedelta(days=expiry_days())
    except Exception as exc:  # the researcher sees "failed" and the reason; they can retry
        log.exception("export %s failed", export.pk)
        export.status = DatasetExport.Status.FAILED
        export.error = f"{exc.__class__.__name__}: {exc}"[:300]
        export.finished_at = timezone.now()
    export.save()
    return export
