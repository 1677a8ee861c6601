"""Background work for dataset exports, on the "exports" queue (see studyplatform/celery.py)."""

from __future__ import annotations

import logging

from celery import shared_task

from .models import DatasetExport

log = logging.getLogger(__name__)


# Exports of a large study run far longer than the global 5-minute limit; an hour is a
# generous ceiling that still frees a stuck worker.
@shared_task(
    name="studyplatform.exports.tasks.build_export",
    ignore_result=True,
    bind=True,
    soft_time_limit=3600,
    time_limit=3660,
)
def build_export(self, export_id: int) -> None:
    """Claim the export (pending, or running with an expired lease: its worker died) and build
    it; a delivery that finds it held by a live worker, or finished, does nothing."""
    from studyplatform.core.leases import lease_fail_exhausted, lease_owner_name

    from .jobs import EXPORT_JOB
    from .services import export_build, export_claim

    lease = export_claim(export_id, owner=lease_owner_name(self.request.id))
    if lease is None:
        if not lease_fail_exhausted(EXPORT_JOB, export_id):
            log.info("export %s missing, finished or held by another worker", export_id)
        return
    export = DatasetExport.objects.select_related("study").get(pk=export_id)
    export_build(export=export, lease=lease)


@shared_task(name="studyplatform.exports.tasks.expire_exports", ignore_result=True)
def expire_exports() -> int:
    from .services import export_expire_due

    return export_expire_due()
