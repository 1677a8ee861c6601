"""Background work of the classifiers app: executing a classification run (analysis queue)."""

from __future__ import annotations

from celery import shared_task

from studyplatform.core.leases import Lease, job_run

from .jobs import CLASSIFICATION_JOB
from .models import ClassificationRun
from .services import classification_run_claim, classification_run_execute


@shared_task(
    name="studyplatform.classifiers.tasks.classification_run_task",
    ignore_result=True,
    bind=True,
    # A large study's run takes long; progress is stored per chunk, so a limit only stops it.
    soft_time_limit=6 * 3600,
    time_limit=6 * 3600 + 60,
)
def classification_run_task(self, run_id: int) -> None:
    """Claim the run (pending, or running with an expired lease: its worker died) and execute
    it; a delivery that finds it held by a live worker, or finished, does nothing."""

    def work(lease: Lease) -> None:
        run = ClassificationRun.objects.select_related("study", "protocol_version").get(id=run_id)
        classification_run_execute(run=run, lease=lease)

    job_run(
        CLASSIFICATION_JOB,
        run_id,
        task_id=self.request.id,
        claim=classification_run_claim,
        work=work,
    )
