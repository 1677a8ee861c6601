"""Participants' data downloads as leased jobs (studyplatform/core/leases.py): how the lease
sweep sends a download again. Light on purpose: imported at startup."""

from __future__ import annotations

from studyplatform.core.leases import JobKind, job_kind_register

from .models import DataDownload


def _dispatch(download_id: int) -> None:
    from .tasks import build_data_download

    build_data_download.delay(download_id)


# The beat sweep re-dispatches a download whose worker died and, after JOB_MAX_ATTEMPTS, fails
# it (the reason stays on the row for the operator). Nobody is emailed: the participant's
# "Download my data" page shows the failed archive and its button prepares a new one (and an
# email would need the identity vault; the participant may have given no address).
DATA_DOWNLOAD_JOB = job_kind_register(
    JobKind(
        name="data_download",
        label="data download",
        model=DataDownload,
        pending=DataDownload.Status.PENDING,
        running=DataDownload.Status.RUNNING,
        failed=DataDownload.Status.FAILED,
        dispatch=_dispatch,
        study_slug=lambda download: download.participant.study.slug,
        error_max_length=300,
    )
)
