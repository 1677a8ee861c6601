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
    soft_time_limit=3600,
    time_limit=3660,
)
def build_export(export_id: int) -> None:
    from .services import export_build

    export = DatasetExport.objects.select_related("study").filter(pk=export_id).first()
    if export is None or export.status != DatasetExport.Status.PENDING:
        log.info("export %s missing or already handled", export_id)
        return
    # export_build claims the row with a conditional update, so a second delivery is a no-op.
    export_build(export=export)


@shared_task(name="studyplatform.exports.tasks.expire_exports", ignore_result=True)
def expire_exports() -> int:
    from .services import export_expire_due

    return export_expire_due()
