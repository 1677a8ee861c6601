"""Dataset exports as leased jobs (studyplatform/core/leases.py): how the lease sweep sends an
export again and whom it tells when one failed for good. Light on purpose: imported at startup."""

from __future__ import annotations

from studyplatform.core.leases import JobKind, job_kind_register, requester_emailer

from .models import DatasetExport

# The beat sweep re-dispatches an export whose worker died and, after JOB_MAX_ATTEMPTS, fails
# it and emails the researcher who requested it.
EXPORT_JOB = job_kind_register(
    JobKind(
        name="export",
        label="export",
        model=DatasetExport,
        task="studyplatform.exports.tasks.build_export",
        notify_failed=requester_emailer(
            what="dataset export", page="console:monitor_exports", page_label="exports"
        ),
        study_slug=lambda export: export.study.slug,
        error_max_length=300,
    )
)
