"""Participant background work."""

from __future__ import annotations

import logging

from celery import shared_task

from .models import DataDownload

log = logging.getLogger(__name__)


@shared_task(
    name="studyplatform.participants.tasks.build_data_download", ignore_result=True, bind=True
)
def build_data_download(self, download_id: int) -> None:
    """Claim the download (pending, or running with an expired lease: its worker died) and
    build it; a delivery that finds it held by a live worker, or finished, does nothing."""
    from studyplatform.core.leases import lease_fail_exhausted, lease_owner_name

    from .jobs import DATA_DOWNLOAD_JOB
    from .services import data_download_build, data_download_claim

    lease = data_download_claim(download_id, owner=lease_owner_name(self.request.id))
    if lease is None:
        if not lease_fail_exhausted(DATA_DOWNLOAD_JOB, download_id):
            log.info("download %s missing, finished or held by another worker", download_id)
        return
    download = DataDownload.objects.select_related("participant__study").get(pk=download_id)
    data_download_build(download=download, lease=lease)


@shared_task(name="studyplatform.participants.tasks.expire_data_downloads", ignore_result=True)
def expire_data_downloads() -> int:
    from .services import data_downloads_expire_due

    return data_downloads_expire_due()
