"""Background work for dataset exports, on the "exports" queue (see studyplatform/celery.py)."""

from __future__ import annotations

from celery import shared_task

from .models import DatasetExport


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
    from studyplatform.core.leases import Lease, job_run

    from .jobs import EXPORT_JOB
    from .services import export_build, export_claim

    def work(lease: Lease) -> None:
        export = DatasetExport.objects.select_related("study").get(pk=export_id)
        export_build(export=export, lease=lease)

    job_run(EXPORT_JOB, export_id, task_id=self.request.id, claim=export_claim, work=work)


@shared_task(name="studyplatform.exports.tasks.expire_exports", ignore_result=True)
def expire_exports() -> int:
    from .services import export_expire_due

    return export_expire_due()
