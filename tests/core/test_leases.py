"""Job leases (studyplatform/core/leases.py): a job whose worker died is taken over after its
lease expires, a worker that lost its lease writes nothing, the beat sweep re-dispatches dead
and forgotten jobs, and after JOB_MAX_ATTEMPTS the job fails with the reason, audited, and the
researcher is told. The same jobs with real, SIGKILLed workers: tests/faults/test_worker_kill.py.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from analysis.jobs import ANALYSIS_JOB
from analysis.models import AnalysisRun
from analysis.services import analysis_run_claim, analysis_run_create, analysis_run_execute
from studyplatform.beat import BEAT_SCHEDULE
from studyplatform.core.leases import (
    JOB_KINDS,
    Keepalive,
    LeaseLost,
    lease_claim,
    leases_sweep,
)
from studyplatform.core.models import AuditEvent
from studyplatform.exports.jobs import EXPORT_JOB
from studyplatform.exports.models import DatasetExport
from studyplatform.exports.services import export_build, export_create
from studyplatform.exports.tasks import build_export
from studyplatform.participants.jobs import DATA_DOWNLOAD_JOB
from studyplatform.participants.models import DataDownload
from studyplatform.participants.services import data_download_build, data_download_request
from studyplatform.participants.session import SESSION_KEY

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]

LEASE = 300
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _lease_settings(settings, tmp_path):
    settings.JOB_LEASE_SECONDS = LEASE
    settings.JOB_MAX_ATTEMPTS = 3
    settings.JOB_PENDING_REDISPATCH_SECONDS = 900
    settings.MEDIA_ROOT = tmp_path / "media"


def long_ago(seconds: int = LEASE + 60) -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=seconds)


def claimed_by_a_dead_worker(kind, pk, *, owner="dead-host:4242:task-1"):
    """A claim made long enough ago that its lease has expired: the worker was SIGKILLed."""
    lease = lease_claim(kind, pk, owner=owner, now=long_ago())
    assert lease is not None
    return lease


def died_three_times(kind, pk) -> None:
    """Three claims, each after the previous lease expired, all by workers that then died."""
    for attempt in range(3):
        when = long_ago(3000 - attempt * (LEASE + 1))
        assert lease_claim(kind, pk, owner=f"host:{attempt}:t", now=when) is not None


def export_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "exports"
    return sorted(p for p in root.glob("*.zip")) if root.exists() else []


def work_dirs(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "exports" / ".work"
    return sorted(root.iterdir()) if root.exists() else []


def download_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "downloads"
    return sorted(root.iterdir()) if root.exists() else []


@pytest.fixture
def people(recruiting_study, enroll):
    return [enroll(recruiting_study) for _ in range(2)]


def new_export(study, owner) -> DatasetExport:
    return export_create(
        study=study, user=owner, options={"tables": ["participants"]}, enqueue=False
    )


# ---------------------------------------------------------------------------------------------
# Claim and takeover


def test_a_running_job_whose_lease_expired_is_taken_over(study, owner):
    # given: a run claimed by a worker that died (its lease ran out)
    run = analysis_run_create(study=study, created_by=owner, enqueue=False)
    claimed_by_a_dead_worker(ANALYSIS_JOB, run.pk)
    # when: the task is delivered again
    lease = analysis_run_claim(run.pk, owner="live-host:1:task-2")
    # then: the new worker holds it, on its second attempt
    run.refresh_from_db()
    assert lease is not None and lease.attempt == 2
    assert run.status == AnalysisRun.Status.RUNNING
    assert run.lease_owner == "live-host:1:task-2"
    assert run.attempts == 2
    assert run.lease_expires_at > timezone.now() + dt.timedelta(seconds=LEASE - 30)


def test_a_live_lease_is_not_taken_over(study, owner):
    # given: a run held by a worker whose lease is current
    run = analysis_run_create(study=study, created_by=owner, enqueue=False)
    assert analysis_run_claim(run.pk, owner="live-host:1:task-1") is not None
    # when: a duplicate delivery tries to claim it
    second = analysis_run_claim(run.pk, owner="other-host:2:task-1")
    # then: it is refused and the row is untouched
    run.refresh_from_db()
    assert second is None
    assert (run.lease_owner, run.attempts) == ("live-host:1:task-1", 1)


def test_a_worker_that_lost_its_run_stops_and_writes_no_result(study, owner):
    # given: worker A's run was taken over by worker B while A was presumed dead
    run = analysis_run_create(study=study, created_by=owner, enqueue=False)
    stale = claimed_by_a_dead_worker(ANALYSIS_JOB, run.pk)
    assert analysis_run_claim(run.pk, owner="b-host:2:task-2") is not None
    # when: A wakes up and carries on
    assert stale.heartbeat() is False
    with pytest.raises(LeaseLost):
        stale.require(progress=50)
    result = analysis_run_execute(run=run, lease=stale)
    # then: A stopped at its first heartbeat; the run is still B's, running, with no result
    assert result.status == AnalysisRun.Status.RUNNING
    assert result.lease_owner == "b-host:2:task-2"
    assert result.results is None and result.report_html == ""
    assert result.step == "" and result.progress == 0
    # and A cannot finish or fail it either
    assert stale.finish(status=AnalysisRun.Status.DONE) is False
    assert stale.fail("boom") is False
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.RUNNING and run.error == ""


def test_a_stale_export_owner_heartbeat_is_refused_mid_build_and_leaves_no_file(
    recruiting_study, owner, people, settings
):
    # given: worker A is building an export
    export = new_export(recruiting_study, owner)
    stale = lease_claim(EXPORT_JOB, export.pk, owner="a-host:1:task-1")
    taken = {}

    def takeover_on_first_table(percent, label):
        # the sweep presumed A dead: B takes the export over while A is mid-build
        if not taken:
            taken["lease"] = lease_claim(
                EXPORT_JOB,
                export.pk,
                owner="b-host:2:task-2",
                now=timezone.now() + dt.timedelta(seconds=LEASE + 1),
            )

    # when: A reports its next progress
    result = export_build(export=export, progress=takeover_on_first_table, lease=stale)
    # then: A stopped; no zip, no work files; the export is B's and still running
    assert taken["lease"] is not None
    assert result.status == DatasetExport.Status.RUNNING
    assert result.lease_owner == "b-host:2:task-2"
    assert export_files(settings) == [] and work_dirs(settings) == []
    # and B's build produces exactly one zip
    done = export_build(export=result, lease=taken["lease"])
    assert done.status == DatasetExport.Status.DONE, done.error
    assert export_files(settings) == [Path(settings.MEDIA_ROOT) / "exports" / done.file_name]
    assert work_dirs(settings) == []


def test_a_stale_export_owner_cannot_finish_and_moves_no_file_into_place(
    recruiting_study, owner, people, settings
):
    # given: worker A has written every table; B takes over just before A finishes
    export = new_export(recruiting_study, owner)
    stale = lease_claim(EXPORT_JOB, export.pk, owner="a-host:1:task-1")

    def takeover_before_finish(percent, label):
        if label == "zip":
            # B's claim happens after A's last heartbeat, so only the finish can refuse A
            DatasetExport.objects.filter(pk=export.pk).update(
                lease_owner="b-host:2:task-2", attempts=2
            )

    # when: A finishes its build
    result = export_build(export=export, progress=takeover_before_finish, lease=stale)
    # then: nothing was moved into place or recorded
    assert result.status == DatasetExport.Status.RUNNING
    assert result.file_name == "" and result.sha256 == ""
    assert export_files(settings) == [] and work_dirs(settings) == []
    assert not result.members.exists()


def test_a_stale_download_owner_leaves_no_archive(recruiting_study, people, settings):
    # given: a download whose first worker died and was taken over
    download = data_download_request(participant=people[0])
    DataDownload.objects.filter(pk=download.pk).update(status=DataDownload.Status.PENDING)
    stale = claimed_by_a_dead_worker(DATA_DOWNLOAD_JOB, download.pk)
    fresh = lease_claim(DATA_DOWNLOAD_JOB, download.pk, owner="b-host:2:task-2")
    # when: the stale worker builds it
    result = data_download_build(download=download, lease=stale)
    # then: no file, and the row is still the new owner's
    assert download_files(settings) == []
    assert result.status == DataDownload.Status.RUNNING and result.file_name == ""
    # and the new owner writes exactly one archive
    done = data_download_build(download=download, lease=fresh)
    assert done.status == DataDownload.Status.READY, done.error
    assert [p.name for p in download_files(settings)] == [done.file_name]


def test_a_redelivered_export_task_takes_over_a_dead_workers_build(
    recruiting_study, owner, people, settings
):
    # given: a build whose worker died (lease expired), with half-written files left behind
    export = new_export(recruiting_study, owner)
    claimed_by_a_dead_worker(EXPORT_JOB, export.pk)
    leftover = Path(settings.MEDIA_ROOT) / "exports" / ".work" / f"{export.pk}-1-deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "participants.csv").write_text("half a table")
    # when: the broker redelivers the task
    build_export.apply(args=[export.pk])
    # then: the export is built once, by the new attempt; the dead attempt's files are gone
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.DONE, export.error
    assert export.attempts == 2
    assert len(export_files(settings)) == 1
    assert work_dirs(settings) == []


# ---------------------------------------------------------------------------------------------
# The sweep


def test_the_sweep_redispatches_a_job_whose_worker_died(recruiting_study, owner, people, settings):
    # given: an export whose worker was killed mid-build
    export = new_export(recruiting_study, owner)
    claimed_by_a_dead_worker(EXPORT_JOB, export.pk)
    # when: beat runs the sweep (tasks run eagerly in tests, as a worker would run them)
    counts = leases_sweep()
    # then: it was sent again and built exactly once
    export.refresh_from_db()
    assert counts["redispatched"] == 1
    assert export.status == DatasetExport.Status.DONE, export.error
    assert export.attempts == 2 and export.dispatched_at is not None
    assert len(export_files(settings)) == 1
    # and a second sweep has nothing to do
    assert leases_sweep() == {"redispatched": 0, "failed": 0}


def test_every_job_kind_names_the_celery_task_the_sweep_sends():
    # given: the job kinds the apps register at start-up
    kinds = {kind.name: kind.task for kind in JOB_KINDS.values()}
    # then: all four are there, and each names an importable task registered under that name
    # (the sweep imports it by this path only when it re-sends a job)
    assert set(kinds) == {"analysis_run", "classification_run", "export", "data_download"}
    for path in kinds.values():
        assert import_string(path).name == path


def test_the_sweep_sends_a_pending_job_nobody_picked_up_once(recruiting_study, people, settings):
    # given: a download request whose task was lost (Redis restarted without persistence)
    download = data_download_request(participant=people[0])
    DataDownload.objects.filter(pk=download.pk).update(
        status=DataDownload.Status.PENDING,
        created_at=long_ago(901),
        file_name="",
    )
    for path in download_files(settings):
        path.unlink()
    recent = data_download_request(participant=people[1])
    DataDownload.objects.filter(pk=recent.pk).update(status=DataDownload.Status.PENDING)
    # when: the sweep runs
    counts = leases_sweep()
    # then: only the old request was sent again, and it is ready
    download.refresh_from_db()
    recent.refresh_from_db()
    assert counts["redispatched"] == 1
    assert download.status == DataDownload.Status.READY, download.error
    assert recent.status == DataDownload.Status.PENDING


def test_the_sweep_does_not_resend_a_job_it_just_sent(study, owner, settings):
    # given: a dead worker's run that the sweep already re-sent (the message is queued)
    settings.CELERY_TASK_ALWAYS_EAGER = False
    run = analysis_run_create(study=study, created_by=owner, enqueue=False)
    claimed_by_a_dead_worker(ANALYSIS_JOB, run.pk)
    AnalysisRun.objects.filter(pk=run.pk).update(dispatched_at=timezone.now())
    # when: the next sweep runs before a worker took it
    counts = leases_sweep()
    # then: nothing is sent twice
    assert counts == {"redispatched": 0, "failed": 0}


def test_after_max_attempts_the_run_fails_with_the_reason_and_the_researcher_is_told(
    study, owner, client, mailoutbox, settings
):
    # given: a run whose worker died on each of its three attempts
    run = analysis_run_create(study=study, created_by=owner, enqueue=False)
    died_three_times(ANALYSIS_JOB, run.pk)
    # when: the sweep finds the last lease expired
    counts = leases_sweep()
    # then: the run failed with the reason, and is not sent again
    run.refresh_from_db()
    assert counts == {"redispatched": 0, "failed": 1}
    assert run.status == AnalysisRun.Status.FAILED
    assert run.error.startswith("The worker stopped 3 times while running this analysis run")
    assert "host:2:t" in run.error
    # and the researcher who asked for it got one email saying so
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [owner.email]
    assert f"analysis run {run.pk} failed" in mailoutbox[0].subject
    assert "The worker stopped 3 times" in mailoutbox[0].body
    analyses = reverse("console:monitor_analyses", kwargs={"slug": study.slug})
    assert f"{settings.SITE_URL}{analyses}\n" in mailoutbox[0].body
    # and the final failure is audited
    event = AuditEvent.objects.get(action="analysis_run.failed")
    assert event.data["attempts"] == 3 and event.data["last_owner"] == "host:2:t"
    # and the console and the API show it
    client.force_login(owner)
    page = client.get(reverse("console:monitor_analyses", kwargs={"slug": study.slug}))
    assert "The worker stopped 3 times" in page.content.decode()
    api = client.get(f"/api/studies/{study.slug}/analysis-runs/{run.pk}/")
    assert api.json()["status"] == "failed" and api.json()["attempts"] == 3
    assert api.json()["error"] == run.error
    # and a second sweep neither fails it again nor emails again
    assert leases_sweep() == {"redispatched": 0, "failed": 0}
    assert len(mailoutbox) == 1


def test_a_redelivered_task_fails_an_export_out_of_attempts(
    recruiting_study, owner, people, settings, client, mailoutbox
):
    # given: an export whose worker died three times
    export = new_export(recruiting_study, owner)
    died_three_times(EXPORT_JOB, export.pk)
    # when: the broker redelivers its task once more
    build_export.apply(args=[export.pk])
    # then: it is failed, not built; the researcher is told; the console shows the reason
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.FAILED
    assert export.error.startswith("The worker stopped 3 times while running this export")
    assert export_files(settings) == []
    assert [m.to for m in mailoutbox] == [[owner.email]]
    assert f"dataset export {export.pk} failed" in mailoutbox[0].subject
    exports = reverse("console:monitor_exports", kwargs={"slug": recruiting_study.slug})
    assert f"{settings.SITE_URL}{exports}\n" in mailoutbox[0].body
    assert AuditEvent.objects.filter(action="export.failed", target_id=str(export.pk)).exists()
    client.force_login(owner)
    page = client.get(reverse("console:monitor_exports", kwargs={"slug": recruiting_study.slug}))
    assert "The worker stopped 3 times" in page.content.decode()


def test_a_download_out_of_attempts_shows_as_failed_and_can_be_requested_again(
    recruiting_study, people, settings, client
):
    # given: a participant's download whose worker died three times
    download = data_download_request(participant=people[0])
    DataDownload.objects.filter(pk=download.pk).update(status=DataDownload.Status.PENDING)
    died_three_times(DATA_DOWNLOAD_JOB, download.pk)
    # when: the sweep runs
    leases_sweep()
    # then: it is failed with the reason, audited, and no archive exists
    download.refresh_from_db()
    assert download.status == DataDownload.Status.FAILED
    assert "stopped 3 times" in download.error
    assert AuditEvent.objects.filter(action="data_download.failed").count() == 1
    assert download_files(settings) == []
    # and the participant's page says so and offers a new archive, which then builds
    session = client.session
    session[SESSION_KEY] = people[0].pk
    session.save()
    page = client.get(reverse("participants:data")).content.decode()
    assert "Something went wrong. Please try again." in page
    assert "Prepare my data" in page
    assert client.post(reverse("participants:data")).status_code == 302
    again = DataDownload.objects.filter(participant=people[0]).exclude(pk=download.pk).get()
    assert data_download_build(download=again).status == DataDownload.Status.READY


def test_the_beat_schedule_runs_the_lease_sweep_every_minute_with_an_expiry():
    entry = BEAT_SCHEDULE["core-job-lease-sweep"]
    assert entry["task"] == "studyplatform.core.tasks.job_lease_sweep"
    assert entry["schedule"] == 60.0
    assert 0 < entry["options"]["expires"] < 60


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_keeps_its_lease_through_a_step_longer_than_the_lease(study, owner, settings):
    # given: a 1-second lease, held by a worker about to run one long step
    settings.JOB_LEASE_SECONDS = 1
    run = analysis_run_create(study=study, created_by=owner, enqueue=False)
    lease = analysis_run_claim(run.pk, owner="live-host:1:task-1")
    # when: the step takes three times the lease, with the keepalive thread running
    with Keepalive(lease):
        time.sleep(3)
        # then: the lease was renewed in the background, so nobody can take the run over
        assert analysis_run_claim(run.pk, owner="other-host:2:task-2") is None
    run.refresh_from_db()
    assert run.lease_owner == "live-host:1:task-1" and run.attempts == 1
    assert run.heartbeat_at > timezone.now() - dt.timedelta(seconds=2)


@pytest.mark.parametrize(("debug", "expected"), [("true", 2.5), ("false", 0.0)])
def test_the_fault_injection_delay_is_ignored_in_production(debug, expected):
    # given: the test-only delay set in the environment of a development / production process
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DEBUG=debug,
        SECRET_KEY="x" * 50,
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        JOB_TEST_STEP_DELAY_SECONDS="2.5",
        DJANGO_SETTINGS_MODULE="studyplatform.settings",
    )
    code = "import django; django.setup(); from django.conf import settings as s; "
    code += "print(s.JOB_TEST_STEP_DELAY_SECONDS)"
    # when: the settings load
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    # then: only a development process would sleep between job steps
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip()) == expected
