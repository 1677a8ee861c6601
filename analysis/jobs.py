"""Analysis runs as leased jobs (studyplatform/core/leases.py): how the lease sweep sends a
run again and whom it tells when a run failed for good. Light on purpose: imported at startup."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from analysis.models import AnalysisRun
from studyplatform.core.leases import JobKind, job_failed_email, job_kind_register


def _dispatch(run_id: int) -> None:
    from analysis.tasks import analysis_run_task

    analysis_run_task.delay(run_id)


def _notify_failed(run: AnalysisRun) -> None:
    page = reverse("console:monitor_analyses", kwargs={"slug": run.study.slug})
    job_failed_email(
        user=run.created_by,
        subject=f"[{run.study.slug}] analysis run {run.pk} failed",
        body=(
            f"The analysis run {run.pk} you requested for study '{run.study.title}' failed:\n\n"
            f"{run.error}\n\nSee the study's analyses: {settings.SITE_URL}{page}\n"
        ),
    )


# The beat sweep re-dispatches a run whose worker died and, after JOB_MAX_ATTEMPTS, fails it
# and emails the researcher who requested it.
ANALYSIS_JOB = job_kind_register(
    JobKind(
        name="analysis_run",
        label="analysis run",
        model=AnalysisRun,
        pending=AnalysisRun.Status.PENDING,
        running=AnalysisRun.Status.RUNNING,
        failed=AnalysisRun.Status.FAILED,
        dispatch=_dispatch,
        notify_failed=_notify_failed,
        study_slug=lambda run: run.study.slug,
        error_max_length=5000,
    )
)
