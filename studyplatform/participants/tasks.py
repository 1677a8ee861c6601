"""Participant background work."""

from __future__ import annotations

from celery import shared_task

from .models import DataDownload


@shared_task(
    name="studyplatform.participants.tasks.build_data_download", ignore_result=True, bind=True
)
def build_data_download(self, download_id: int) -> None:
    """Claim the download (pending, or running with an expired lease: its worker died) and
    build it; a delivery that finds it held by a live worker, or finished, does nothing."""
    from studyplatform.core.leases import Lease, job_run

    from .jobs import DATA_DOWNLOAD_JOB
    from .services import data_download_build, data_download_claim

    def work(lease: Lease) -> None:
        download = DataDownload.objects.select_related("participant__study").get(pk=download_id)
        data_download_build(download=download, lease=lease)

    job_run(
        DATA_DOWNLOAD_JOB,
        download_id,
        task_id=self.request.id,
        claim=data_download_claim,
        work=work,
    )


@shared_task(name="studyplatform.participants.tasks.expire_data_downloads", ignore_result=True)
def expire_data_downloads() -> int:
    from .services import data_downloads_expire_due

    return data_downloads_expire_due()
