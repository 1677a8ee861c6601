"""Dataset exports as leased jobs (studyplatform/core/leases.py): how the lease sweep sends an
export again and whom it tells when one failed for good. Light on purpose: imported at startup."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from studyplatform.core.leases import JobKind, job_failed_email, job_kind_register

from .models import DatasetExport


def _dispatch(export_id: int) -> None:
    from .tasks import build_export

    build_export.delay(export_id)


def _notify_failed(export: DatasetExport) -> None:
    page = reverse("console:monitor_exports", kwargs={"slug": export.study.slug})
    job_failed_email(
        user=export.created_by,
        subject=f"[{export.study.slug}] export {export.pk} failed",
        body=(
            f"The dataset export {export.pk} you requested for study '{export.study.title}' "
            f"failed:\n\n{export.error}\n\nSee the study's exports: {settings.SITE_URL}{page}\n"
        ),
    )


# The beat sweep re-dispatches an export whose worker died and, after JOB_MAX_ATTEMPTS, fails
# it and emails the researcher who requested it.
EXPORT_JOB = job_kind_register(
    JobKind(
        name="export",
        label="export",
        model=DatasetExport,
        pending=DatasetExport.Status.PENDING,
        running=DatasetExport.Status.RUNNING,
        failed=DatasetExport.Status.FAILED,
        dispatch=_dispatch,
        notify_failed=_notify_failed,
        study_slug=lambda export: export.study.slug,
        error_max_length=300,
    )
)
