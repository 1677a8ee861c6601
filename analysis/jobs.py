"""Analysis runs as leased jobs (studyplatform/core/leases.py): how the lease sweep sends a
run again and whom it tells when a run failed for good. Light on purpose: imported at startup."""

from __future__ import annotations

from analysis.models import AnalysisRun
from studyplatform.core.leases import JobKind, job_kind_register, requester_emailer

# The beat sweep re-dispatches a run whose worker died and, after JOB_MAX_ATTEMPTS, fails it
# and emails the researcher who requested it.
ANALYSIS_JOB = job_kind_register(
    JobKind(
        name="analysis_run",
        label="analysis run",
        model=AnalysisRun,
        task="analysis.tasks.analysis_run_task",
        notify_failed=requester_emailer(
            what="analysis run", page="console:monitor_analyses", page_label="analyses"
        ),
        study_slug=lambda run: run.study.slug,
        error_max_length=5000,
    )
)
