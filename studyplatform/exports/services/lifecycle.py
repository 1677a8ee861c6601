"""The life of an export row: create (validate options, make or reuse the key, enqueue), build
(claim, run the builder, move the zip into place), download (audited), expiry and revocation.

Revocation: a participant who withdraws and asks for deletion must not stay in zips that were
already built. The withdrawal service calls `exports_revoke_for_participant` (registered as a
content deleter by this app, so participants never imports exports): every finished export whose
zip holds the participant is revoked (file deleted, status "revoked" with a reason that never
names anyone, audited) and a replacement with the same options is queued (audited). A build
that is still running re-checks its participants when it finishes, under a row lock, so a
withdrawal during the build cannot slip into the finished zip either.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from studyplatform.core.audit import audit_record
from studyplatform.core.leases import (
    Keepalive,
    Lease,
    LeaseLost,
    fault_injection_pause,
    job_kind_of,
    lease_claim,
    lease_owner_name,
)
from studyplatform.participants.models import Participant
from studyplatform.studies.models import Study

from .. import codebook as cb
from ..models import DatasetExport, DatasetExportMember
from ..pseudonyms import key_fingerprint, new_key
from .builder import Builder, Progress
from .options import export_options_clean

log = logging.getLogger(__name__)

EXPORT_DIR = "exports"


class ExportNotReady(Exception):
    pass


class ExportGone(Exception):
    pass


# What researchers are told: that a withdrawal caused it, never whose.
WITHDRAWAL_REASON = (
    "A participant whose data was in this export withdrew and asked for their data to be "
    "deleted, so the file was deleted."
)


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
    export = _export_record(study=study, created_by=user, options=clean)
    audit_record(
        actor=user,
        action="export.create",
        target=export,
        study_slug=study.slug,
        data={"options": clean, "key_fingerprint": export.key_fingerprint},
    )
    if enqueue:
        _enqueue(export)
    return export


def _export_record(
    *,
    study: Study,
    created_by: Any,
    options: dict[str, Any],
    key_hex: str | None = None,
    source: DatasetExport | None = None,
) -> DatasetExport:
    if key_hex is None and options["reuse_key_of"] is not None:
        source = DatasetExport.objects.get(study=study, pk=options["reuse_key_of"])
        key_hex = source.key
    elif key_hex is None:
        key_hex = new_key().hex()
    return DatasetExport.objects.create(
        study=study,
        created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
        options=options,
        reuse_key_of=source,
        key=key_hex,
        key_fingerprint=key_fingerprint(bytes.fromhex(key_hex)),
    )


def _enqueue(export: DatasetExport) -> None:
    from ..tasks import build_export

    transaction.on_commit(lambda: build_export.delay(export.pk))


def export_download(*, export: DatasetExport, actor: Any, now: dt.datetime | None = None) -> Path:
    """The zip to stream, after writing the audit event (who, when, options, file hash)."""
    now = now or timezone.now()
    if export.is_revoked():
        replacement = (
            f" Export {export.replaced_by_id} was queued in its place, without that participant."
            if export.replaced_by_id
            else ""
        )
        raise ExportGone(f"this export was revoked. {export.revoked_reason}{replacement}")
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
            DatasetExportMember.objects.filter(export=export).delete()
            audit_record(
                actor=None, action="export.expire", target=export, study_slug=export.study.slug
            )
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# Build


def export_claim(export_id: int, *, owner: str | None = None) -> Lease | None:
    """Claim a pending export, or take over one whose worker died (expired lease); the lease
    only for the one caller that did it. See studyplatform/core/leases.py."""
    return lease_claim(
        job_kind_of(DatasetExport), export_id, owner=owner or lease_owner_name(), progress=0
    )


def _work_root() -> Path:
    return Path(settings.MEDIA_ROOT) / EXPORT_DIR / ".work"


def _remove_dead_attempts(export: DatasetExport, keep: Path) -> None:
    # A killed worker leaves its half-built tables behind; the attempt that took over removes
    # them (a stale owner still alive loses its files too, and its lease: it stops).
    for path in _work_root().glob(f"{export.pk}-*"):
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)


def export_build(
    *, export: DatasetExport, progress: Progress | None = None, lease: Lease | None = None
) -> DatasetExport:
    """Build the export's zip under a lease (claimed here unless the task already did). Safe to
    call twice: only one caller holds the lease, and only the holder can finish the export."""
    if lease is None:
        lease = export_claim(export.pk)
        if lease is None:
            log.info("export %s already claimed", export.pk)
            return DatasetExport.objects.get(pk=export.pk)
    export.refresh_from_db()

    def report(percent: int, label: str) -> None:
        # The progress write is the heartbeat; it raises LeaseLost if the export was taken over.
        lease.require(progress=percent)
        fault_injection_pause()
        if progress is not None:
            progress(percent, label)

    # Each attempt writes under a fresh name, so a taken-over attempt never shares files.
    workdir = _work_root() / f"{export.pk}-{lease.attempt}-{secrets.token_hex(6)}"
    try:
        workdir.mkdir(parents=True)
        _remove_dead_attempts(export, keep=workdir)
        with Keepalive(lease):
            result = Builder(export, workdir, report).run()
            export = _export_finish(export=export, result=result, lease=lease)
    except LeaseLost:
        log.warning("export %s: lease lost; this attempt stops and keeps nothing", export.pk)
        export.refresh_from_db()
    except Exception as exc:  # the researcher sees "failed" and the reason; they can retry
        log.exception("export %s failed", export.pk)
        lease.fail(f"{exc.__class__.__name__}: {exc}")
        export.refresh_from_db()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return export


@transaction.atomic
def _export_finish(*, export: DatasetExport, result, lease: Lease) -> DatasetExport:
    """Move the zip into place and mark the export done, unless someone in it withdrew with
    deletion while it was being built (then it is revoked and rebuilt, and nothing is kept).

    The row lock orders this against `exports_revoke_for_participant`, which locks the same
    rows: either the withdrawal committed first (and its participant is seen here), or this
    commits first (and the withdrawal finds a finished export holding its participant).

    The same lock makes finishing conditional on the lease: a worker whose export was taken
    over (or revoked) moves no file into place and records nothing."""
    export = DatasetExport.objects.select_for_update().get(pk=export.pk)
    if not lease.owns(export):
        log.info(
            "export %s is %s (lease of %s); build discarded",
            export.pk,
            export.status,
            export.lease_owner,
        )
        return export
    withdrawn = set(
        Participant.objects.filter(
            study_id=export.study_id,
            status=Participant.Status.WITHDRAWN,
            withdrawal_mode=Participant.Withdrawal.DELETE,
        ).values_list("pk", flat=True)
    )
    if withdrawn & result.participant_pks:
        export.finished_at = timezone.now()
        _export_revoke(export=export, reason=WITHDRAWAL_REASON)
        return export
    directory = Path(settings.MEDIA_ROOT) / EXPORT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    # An unguessable name: the file is only ever served through the audited view.
    name = f"{export.study.slug}-{secrets.token_hex(12)}.zip"
    shutil.move(str(result.zip_path), directory / name)
    try:
        now = timezone.now()
        export.file_name = name
        export.sha256 = cb.sha256_file(directory / name)
        export.size = (directory / name).stat().st_size
        export.detection_counts = dict(result.detection_counts)
        export.disclosure = result.disclosure
        export.status = DatasetExport.Status.DONE
        export.lease_expires_at = None
        export.heartbeat_at = now
        export.progress = 100
        export.finished_at = now
        export.expires_at = now + dt.timedelta(days=expiry_days())
        export.save()
        DatasetExportMember.objects.bulk_create(
            [
                DatasetExportMember(export=export, participant_id=pk)
                for pk in sorted(result.participant_pks)
            ],
            batch_size=2000,
        )
    except BaseException:
        # Nothing half-written: no file without a finished row to account for it.
        (directory / name).unlink(missing_ok=True)
        raise
    return export


# ---------------------------------------------------------------------------------------------
# Revocation (withdrawal with deletion)


def _export_revoke(*, export: DatasetExport, reason: str) -> DatasetExport:
    """Delete the file, mark the export revoked, queue a replacement with the same options.

    Inside the caller's transaction, on a row it has locked. The replacement is built with the
    same options (and so a fresh key unless the original deliberately reused one: the platform
    never links two exports on its own) by the same researcher; both steps are audited."""
    if export.file_name:
        export_path(export).unlink(missing_ok=True)
    DatasetExportMember.objects.filter(export=export).delete()
    # A key the original deliberately reused is reused again (taken from the revoked row, so a
    # deleted source export cannot make a withdrawal fail); otherwise the replacement gets a
    # fresh key like any new export.
    reused = export.reuse_key_of_id is not None or export.options.get("reuse_key_of") is not None
    replacement = _export_record(
        study=export.study,
        created_by=export.created_by,
        options=dict(export.options),
        key_hex=export.key if reused else new_key().hex(),
        source=export.reuse_key_of if reused else None,
    )
    export.status = DatasetExport.Status.REVOKED
    export.revoked_at = timezone.now()
    export.revoked_reason = reason[:300]
    export.replaced_by = replacement
    export.save()
    audit_record(
        actor=None,
        action="export.revoke",
        target=export,
        study_slug=export.study.slug,
        data={"reason": export.revoked_reason, "replaced_by": replacement.pk},
    )
    audit_record(
        actor=None,
        action="export.rebuild",
        target=replacement,
        study_slug=export.study.slug,
        data={
            "replaces": export.pk,
            "options": replacement.options,
            "key_fingerprint": replacement.key_fingerprint,
        },
    )
    _enqueue(replacement)
    return export


@transaction.atomic
def exports_revoke_for_participant(*, participant: Participant) -> int:
    """Revoke every finished export of the participant's study whose zip holds them.

    Called by the withdrawal service (withdrawal with deletion), inside its transaction. The
    study's pending, running and finished exports are locked first: a pending build cannot
    start, and a running one cannot finish, until the withdrawal has committed, and then it
    sees the participant as withdrawn (see _export_finish). Returns how many were revoked."""
    open_statuses = (
        DatasetExport.Status.PENDING,
        DatasetExport.Status.RUNNING,
        DatasetExport.Status.DONE,
    )
    locked = list(
        # of=("self",): only the export rows are locked (created_by is an outer join).
        DatasetExport.objects.select_for_update(of=("self",))
        .filter(study_id=participant.study_id, status__in=open_statuses)
        .select_related("study", "created_by")
        .order_by("pk")
    )
    holding = set(
        DatasetExportMember.objects.filter(
            participant=participant,
            export__in=[e.pk for e in locked if e.status == DatasetExport.Status.DONE],
        ).values_list("export_id", flat=True)
    )
    for export in locked:
        if export.pk in holding:
            _export_revoke(export=export, reason=WITHDRAWAL_REASON)
    return len(holding)
