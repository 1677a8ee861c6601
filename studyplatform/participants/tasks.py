"""Participant background work."""

from __future__ import annotations

import logging

from celery import shared_task

from .models import DataDownload

log = logging.getLogger(__name__)


@shared_task(name="studyplatform.participants.tasks.build_data_download", ignore_result=True)
def build_data_download(download_id: int) -> None:
    from .services import data_download_build

    download = (
        DataDownload.objects.select_related("participant__study").filter(pk=download_id).first()
    )
    if download is None or download.status != DataDownload.Status.PENDING:
        log.info("download %s missing or already handled", download_id)
        return
    data_download_build(download=download)


@shared_task(name="studyplatform.participants.tasks.expire_data_downloads", ignore_result=True)
def expire_data_downloads() -> int:
    from .services import data_downloads_expire_due

    return data_downloads_expire_due()
