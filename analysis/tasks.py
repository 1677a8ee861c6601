"""Background work of the analysis app: executing an analysis run on the "analysis" queue."""

from __future__ import annotations

import logging

from celery import shared_task

from analysis.jobs import ANALYSIS_JOB
from analysis.models import AnalysisRun
from analysis.services import analysis_run_claim, analysis_run_execute
from studyplatform.core.leases import lease_fail_exhausted, lease_owner_name

log = logging.getLogger(__name__)


@shared_task(
    name="analysis.tasks.analysis_run_task",
    ignore_result=True,
    bind=True,
    # A large study takes minutes; the global limits are for short jobs.
    soft_time_limit=3600,
    time_limit=3660,
)
def analysis_run_task(self, run_id: int) -> None:
    """Claim the run (pending, or running with an expired lease: its worker died) and execute
    it; a delivery that finds it held by a live worker, or finished, does nothing."""
    lease = analysis_run_claim(run_id, owner=lease_owner_name(self.request.id))
    if lease is None:
        if not lease_fail_exhausted(ANALYSIS_JOB, run_id):
            log.info("analysis run %s is missing, finished or held; skipping", run_id)
        return
    run = AnalysisRun.objects.select_related("study", "protocol_version").get(id=run_id)
    analysis_run_execute(run=run, lease=lease)
