"""Analysis runs: create (and enqueue), claim, execute, fail.

:func:`analysis_run_execute` is the whole pipeline — load the study's frames, compute daily
usage features, link them to the survey occasions, fit the plan's models, render the report —
recording progress after each step on the run row, which the API and the CLI read.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from analysis.classifier_outcomes import survey_instruments
from analysis.data import classifier_feature_notes, frames_hash, load_study_frames
from analysis.models import AnalysisRun
from analysis.pipeline import analyse
from analysis.report import render_report
from studyplatform.core.audit import audit_record
from studyplatform.core.leases import (
    Keepalive,
    Lease,
    LeaseLost,
    fault_injection_pause,
    job_claim,
)
from studyplatform.studies.models import Study
from studyplatform.studies.protocol.factors import analysis_design

log = logging.getLogger(__name__)

__all__ = [
    "STEPS",
    "LookNotAllowed",
    "analysis_look_default",
    "analysis_run_claim",
    "analysis_run_create",
    "analysis_run_execute",
    "analysis_run_fail",
    "analysis_run_look",
    "code_version",
]

# (step, progress when it starts). The CLI's progress bar walks the same list.
STEPS: tuple[tuple[str, int], ...] = (
    ("loading", 5),
    ("features", 25),
    ("linking", 40),
    ("models", 55),
    ("report", 85),
)

REPO_DIR = Path(__file__).resolve().parent.parent

ProgressCallback = Callable[[str, int], None]


def code_version() -> str:
    """``git describe`` of the checkout when there is one, else the installed package version."""
    try:
        # git from PATH with fixed arguments, as a developer would run it.
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],  # noqa: S607
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        if out.stdout.strip():
            return "git:" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return "studyplatform " + metadata.version("studyplatform")
    except metadata.PackageNotFoundError:
        return "studyplatform unknown"


class LookNotAllowed(ValueError):
    """The look kind asked for does not fit the study's state (the message says why)."""


def analysis_look_default(study: Study) -> str:
    """Final once the study is closed (no more data will come), interim before."""
    if study.status == Study.Status.CLOSED:
        return AnalysisRun.Look.FINAL
    return AnalysisRun.Look.INTERIM


def _check_look(study: Study, look: str) -> None:
    if look not in AnalysisRun.Look.values:
        raise LookNotAllowed(f"look must be interim or final, not {look!r}")
    if look == AnalysisRun.Look.FINAL and study.status != Study.Status.CLOSED:
        # A "final" analysis while data still arrive would be an unlabelled interim look.
        raise LookNotAllowed(
            f"a final analysis needs a closed study; this study is {study.status}: "
            "run an interim look, or close the study first"
        )


def analysis_run_create(
    *,
    study: Study,
    created_by=None,
    params: dict[str, Any] | None = None,
    enqueue: bool = True,
    look: str | None = None,
) -> AnalysisRun:
    """A pending run of the study's current protocol; the task is queued once this commits.

    ``look`` is ``"interim"`` or ``"final"`` (default :func:`analysis_look_default`); a final
    look needs a closed study (:class:`LookNotAllowed` otherwise) and is audited.
    """
    look = look or analysis_look_default(study)
    _check_look(study, look)
    params = dict(params or {})
    # Pilot data is all a draft or piloting study has; once launched, pilots are left out.
    params.setdefault("include_pilot", study.status in (Study.Status.DRAFT, Study.Status.PILOTING))
    params.setdefault("text_markers", False)
    with transaction.atomic():
        run = AnalysisRun.objects.create(
            study=study,
            created_by=created_by,
            protocol_version=study.current_version,
            params=params,
            look=look,
        )
        if look == AnalysisRun.Look.FINAL:
            audit_record(
                actor=created_by,
                action="analysis.final_run",
                target=run,
                study_slug=study.slug,
                data={"previous_looks": _earlier_done(run).count()},
            )
        if enqueue:
            from analysis.tasks import analysis_run_task

            transaction.on_commit(lambda: analysis_run_task.delay(run.id))
    return run


def _earlier_done(run: AnalysisRun):
    # Ids follow creation order: the runs started before this one that have finished.
    return AnalysisRun.objects.filter(
        study_id=run.study_id, status=AnalysisRun.Status.DONE, id__lt=run.id
    )


def analysis_run_look(run: AnalysisRun) -> dict[str, Any]:
    """``results["look"]``: this run's kind and the completed runs of the study before it.

    Every earlier completed run counts as a look (pilot-data runs included): a reader of a
    final report should know each time the accumulating data were analysed.
    """
    earlier = list(_earlier_done(run).values_list("look", flat=True))
    return {
        "kind": run.look,
        "number": len(earlier) + 1,
        "previous_looks": len(earlier),
        "previous_interim": earlier.count(AnalysisRun.Look.INTERIM),
        "previous_final": earlier.count(AnalysisRun.Look.FINAL),
        "study_status": run.study.status,
    }


def analysis_run_claim(run_id: int, *, owner: str | None = None) -> Lease | None:
    """Claim a pending run, or take over one whose worker died (expired lease); the lease
    (truthy) only for the one caller that did it. See studyplatform/core/leases.py."""
    return job_claim(
        AnalysisRun, run_id, owner=owner, started_at=timezone.now(), progress=0, step=""
    )


def analysis_run_fail(*, run: AnalysisRun, error: str, lease: Lease | None = None) -> AnalysisRun:
    """Mark the run failed. With a lease, only if this worker still owns the run (a worker that
    lost it leaves the row to its new owner)."""
    if lease is not None:
        if not lease.finish(status=AnalysisRun.Status.FAILED, error=error[:5000]):
            log.info("analysis run %s: lease lost, failure not recorded", run.id)
        run.refresh_from_db()
        return run
    run.status = AnalysisRun.Status.FAILED
    run.error = error[:5000]
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    return run


def _progress(
    run: AnalysisRun, step: str, value: int, callback: ProgressCallback | None, lease: Lease
) -> None:
    # A single-column UPDATE, so the row the API polls moves while the long step runs; it is
    # also the heartbeat, and raises LeaseLost when another worker took the run over.
    lease.require(step=step, progress=value)
    run.step, run.progress = step, value
    fault_injection_pause()
    if callback is not None:
        callback(step, value)


def _plan_of(run: AnalysisRun) -> dict[str, Any]:
    content = run.protocol_version.content or {}
    plan = dict(content.get("analysis") or {})
    plan.update(run.params.get("plan") or {})
    if isinstance(plan.get("factorial"), dict):
        # The pure analysis knows arms, not factors: give it the design the version defines.
        plan["factorial"] = analysis_design({**content, "analysis": plan})
    return plan


def analysis_run_execute(
    *, run: AnalysisRun, progress: ProgressCallback | None = None, lease: Lease | None = None
) -> AnalysisRun:
    """Run the pipeline for ``run`` (pending or already claimed) and store its outputs.

    Any error marks the run failed with the message (and re-raises nothing: a failed analysis
    is a result the researcher sees, not a worker crash).
    """
    if lease is None:
        lease = analysis_run_claim(run.id) if run.status == AnalysisRun.Status.PENDING else None
        if lease is None:
            run.refresh_from_db()
            log.info("analysis run %s is %s; nothing to do", run.id, run.status)
            return run
    run.refresh_from_db()
    with Keepalive(lease):
        return _analysis_run_pipeline(run=run, progress=progress, lease=lease)


def _analysis_run_pipeline(
    *, run: AnalysisRun, progress: ProgressCallback | None, lease: Lease
) -> AnalysisRun:
    try:
        study = run.study
        plan = _plan_of(run)
        text = bool(run.params.get("text_markers"))
        outcomes = list(plan.get("outcomes", []))

        _progress(run, "loading", STEPS[0][1], progress, lease)
        frames = load_study_frames(
            study,
            include_pilot=bool(run.params.get("include_pilot", True)),
            text=text,
            instruments=survey_instruments(outcomes),
        )
        data_hash = frames_hash(frames)

        steps = dict(STEPS)
        analysis = analyse(
            frames,
            plan,
            text=text,
            step=lambda name: _progress(run, name, steps[name], progress, lease),
        )
        results, linked, daily = analysis.results, analysis.linked, analysis.daily
        # Classifier rates used by the plan carry their validation figures (or say none exist).
        results["classifiers"] = classifier_feature_notes(
            study, [*plan.get("predictors", []), *outcomes]
        )
        results["look"] = analysis_run_look(run)
        attrition = analysis.attrition

        _progress(run, "report", STEPS[4][1], progress, lease)
        inv = frames.invitations.dropna(subset=["wave"])
        compliance = (
            inv.assign(done=inv["status"] == "completed")
            .groupby("wave")
            .agg(invited=("done", "size"), completed=("done", "sum"))
            .reset_index()
        )
        version = code_version()
        now = timezone.now()
        html = render_report(
            results,
            {
                "linked": linked,
                "compliance": compliance,
                "messages_per_day": daily.loc[daily["messages_sent"] > 0, "messages_sent"],
                "attrition": attrition,
            },
            {
                "title": f"Analysis of {study.title}",
                "study": study.slug,
                "protocol_version": run.protocol_version.number,
                "data_hash": data_hash,
                "code_version": version,
                "created_at": now.isoformat(timespec="seconds"),
            },
        )
    except LeaseLost:
        # Another worker took the run over (this one was presumed dead): its result counts.
        log.warning("analysis run %s: lease lost; this attempt stops", run.id)
        run.refresh_from_db()
        return run
    except Exception as exc:  # any failure becomes the run's error message
        log.exception("analysis run %s failed", run.id)
        return analysis_run_fail(run=run, error=f"{type(exc).__name__}: {exc}", lease=lease)

    # Finishing is conditional on still owning the run: one result, written once.
    finished = lease.finish(
        status=AnalysisRun.Status.DONE,
        results=results,
        report_html=html,
        data_hash=data_hash,
        code_version=version,
        progress=100,
        step="done",
        finished_at=now,
    )
    run.refresh_from_db()
    if not finished:
        log.warning("analysis run %s: lease lost before finishing; result discarded", run.id)
        return run
    if progress is not None:
        progress("done", 100)
    return run
