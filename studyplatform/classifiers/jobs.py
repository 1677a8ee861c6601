"""Classification runs as leased jobs (studyplatform/core/leases.py): how the lease sweep sends a
run again after its worker died, and whom it tells when a run failed for good."""

from __future__ import annotations

from studyplatform.core.leases import JobKind, job_kind_register, requester_emailer

from .models import ClassificationRun

CLASSIFICATION_JOB = job_kind_register(
    JobKind(
        name="classification_run",
        label="classification run",
        model=ClassificationRun,
        task="studyplatform.classifiers.tasks.classification_run_task",
        notify_failed=requester_emailer(
            what="classification run", page="console:classifiers", page_label="classifiers page"
        ),
        study_slug=lambda run: run.study.slug,
        error_max_length=2000,
    )
)
