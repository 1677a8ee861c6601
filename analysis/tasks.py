"""Background work of the analysis app: executing an analysis run on the "analysis" queue."""

from __future__ import annotations

import logging

from celery import shared_task

from analysis.models import AnalysisRun
from analysis.services import analysis_run_claim, analysis_run_execute

log = logging.getLogger(__name__)


@shared_task(
    name="analysis.tasks.analysis_run_task",
    ignore_result=True,
    # A large study takes minutes; the global limits are for short jobs.
    soft_time_limit=3600,
    time_limit=3660,
)
def analysis_run_task(run_id: int) -> None:
    """Claim the pending run (so a duplicate delivery does nothing) and execute it."""
    if not analysis_run_claim(run_id):
        log.info("analysis run %s is missing or already claimed; skipping", run_id)
        return
    run = AnalysisRun.objects.select_related("study", "protocol_version").get(id=run_id)
    analysis_run_execute(run=run)
