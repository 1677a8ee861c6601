"""Fault injection with real processes: a Celery worker is SIGKILLed in the middle of an analysis
run and of an export; another worker starts taking jobs, the lease sweep runs through the real
broker, and the job completes exactly once, with exactly one artefact.

The worker is a real `celery worker` subprocess on the test Redis and the test database. On
PostgreSQL it uses the test database itself (the test commits, so the worker sees its rows).
SQLite's test database lives in this process's memory, so the test copies it (online backup
API) to a file after building its rows and the worker and the assertions use that file.
The first worker runs with JOB_TEST_STEP_DELAY_SECONDS, a test-only environment setting that
sleeps between job steps so it can be killed mid-job, and a 3-second lease.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from analysis.services import analysis_run_create
from studyplatform.celery import app as celery_app
from studyplatform.exports.services import export_create
from tests.classifiers.conftest import (  # noqa: F401 - fixtures for the classification run
    chat,
    loopback_endpoint,
    make_classified_study,
    upstream,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # send_task always goes through the broker (the point here); the test settings' eager mode
    # only warns about it.
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3
# Seconds the first worker sleeps after each progress step: time to see it mid-job and kill
# it there (the test kills it, so the rest of the delay is never spent).
STEP_DELAY = "4"


class Instance:
    """The platform as worker processes see it: database, media root, broker."""

    def __init__(self, tmp_path: Path, redis_url: str) -> None:
        self.tmp = tmp_path
        self.media = tmp_path / "media"
        self.media.mkdir()
        self.sqlite_file: Path | None = None
        self.workers: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        vendor = connection.vendor
        db = connection.settings_dict
        if vendor == "sqlite":
            self.sqlite_file = tmp_path / "instance.sqlite3"
            database_url = f"sqlite:///{self.sqlite_file}"
        else:
            database_url = (
                f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
                f"{db['PORT'] or 5432}/{db['NAME']}"
            )
        self.env = {
            **os.environ,
            "DEBUG": "true",
            "DATABASE_URL": database_url,
            "DB_POOL": "false",
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "MEDIA_ROOT": str(self.media),
            "VAR_DIR": str(tmp_path / "var"),
            "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        }

    def share(self) -> None:
        """Make the rows built so far visible to worker processes."""
        if self.sqlite_file is None:
            return  # PostgreSQL: committed rows are already shared
        connection.ensure_connection()
        target = sqlite3.connect(self.sqlite_file)
        try:
            connection.connection.backup(target)
        finally:
            target.close()

    def row(self, table: str, pk: int, columns: list[str]) -> dict[str, Any]:
        sql = f"SELECT {', '.join(columns)} FROM {table} WHERE id = "  # noqa: S608 (fixed names)
        if self.sqlite_file is None:
            with connection.cursor() as cursor:
                cursor.execute(sql + "%s", [pk])
                values = cursor.fetchone()
        else:
            db = sqlite3.connect(self.sqlite_file, timeout=30)
            try:
                values = db.execute(sql + "?", [pk]).fetchone()
            finally:
                db.close()
        return dict(zip(columns, values, strict=True))

    def start_worker(self, name: str, queues: str, **env: str) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "studyplatform",
                    "worker",
                    "-P",
                    "solo",
                    "-Q",
                    queues,
                    "-n",
                    f"{name}@%h",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "INFO",
                ],
                cwd=ROOT,
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group, so the kill takes the whole worker and nothing else.
                start_new_session=True,
            )
        self.workers.append(proc)
        return proc

    def wait_for_ready(self, proc: subprocess.Popen) -> None:
        log = self.logs[self.workers.index(proc)]
        self.wait_for(f"worker {proc.pid} to be ready", lambda: b" ready." in log.read_bytes())

    def start_two_workers(self, *, job_queue: str) -> tuple[subprocess.Popen, subprocess.Popen]:
        """The worker to kill (slow between job steps) and the one that recovers the job.

        Both start together: a worker takes 5-30 s to start on a busy machine, and starting
        the second after the kill would double that. The second consumes only the default
        queue (where the sweep runs) until `consume` adds the job's queue after the kill, so
        it cannot take the job first; from then on it is the "new worker"."""
        first = self.start_worker(
            "fault1", f"default,{job_queue}", JOB_TEST_STEP_DELAY_SECONDS=STEP_DELAY
        )
        second = self.start_worker("fault2", "default")
        self.wait_for_ready(first)
        self.wait_for_ready(second)
        return first, second

    def consume(self, name: str, queue: str) -> None:
        """Have the running worker `name` start consuming `queue` (remote control)."""
        node = f"{name}@{socket.gethostname()}"
        replies = celery_app.control.add_consumer(queue, destination=[node], reply=True, timeout=10)
        assert replies and node in replies[0], replies

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def wait_for(self, what: str, check, timeout: float = 40.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs)
        pytest.fail(f"timed out waiting for {what}\n{logs}")

    def run_sweep(self, table: str, pk: int) -> None:
        """Once the dead worker's lease has expired, send the beat sweep through the broker."""

        def expired() -> bool:
            expires = self.row(table, pk, ["lease_expires_at"])["lease_expires_at"]
            if isinstance(expires, str):
                expires = dt.datetime.fromisoformat(expires)
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=dt.UTC)
            return expires < dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=200)

        self.wait_for("the dead worker's lease to expire", expired, timeout=LEASE_SECONDS + 10)
        celery_app.send_task("studyplatform.core.tasks.job_lease_sweep", queue="default")

    def stop_all(self) -> None:
        for proc in self.workers:
            self.kill(proc)


@pytest.fixture
def instance(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    inst = Instance(tmp_path, settings.REDIS_URL)
    yield inst
    inst.stop_all()


def test_a_killed_worker_s_analysis_run_completes_once_on_a_new_worker(instance, study, owner):
    # given: a study with data and a queued analysis run, on a worker that is slow between steps
    call_command("simulate_study", study.slug, participants=16, days=21, effect=0.5, seed=3)
    run = analysis_run_create(study=study, created_by=owner, enqueue=False)
    instance.share()
    first, second = instance.start_two_workers(job_queue="analysis")
    celery_app.send_task("analysis.tasks.analysis_run_task", args=[run.pk], queue="analysis")
    table, columns = "analysis_analysisrun", ["status", "step", "lease_owner", "attempts"]
    instance.wait_for(
        "the first worker to be past the first step",
        lambda: instance.row(table, run.pk, columns)["step"] in ("features", "linking"),
    )
    before = instance.row(table, run.pk, columns)
    assert before["status"] == "running" and f":{first.pid}:" in before["lease_owner"]

    # when: the first worker is SIGKILLed mid-run, the second takes jobs, and the sweep runs
    instance.kill(first)
    instance.consume("fault2", "analysis")
    instance.run_sweep(table, run.pk)

    # then: the run completes, on its second attempt, by the new worker, exactly once
    done = instance.wait_for(
        "the run to finish",
        lambda: (
            (r := instance.row(table, run.pk, [*columns, "report_html", "results"]))["status"]
            in ("done", "failed")
            and r
        ),
    )
    assert done["status"] == "done", done
    assert done["attempts"] == 2
    assert f":{second.pid}:" in done["lease_owner"]
    assert done["report_html"] and done["results"]


def test_a_killed_worker_s_export_completes_with_exactly_one_zip(
    instance, recruiting_study, owner, enroll
):
    # given: a study with participants and a queued export, on a worker slow between tables
    for _ in range(3):
        enroll(recruiting_study)
    export = export_create(
        study=recruiting_study,
        user=owner,
        options={"tables": ["participants", "messages", "responses"]},
        enqueue=False,
    )
    instance.share()
    first, second = instance.start_two_workers(job_queue="exports")
    celery_app.send_task(
        "studyplatform.exports.tasks.build_export", args=[export.pk], queue="exports"
    )
    table = "exports_datasetexport"
    columns = ["status", "progress", "lease_owner", "attempts", "file_name", "sha256"]
    instance.wait_for(
        "the first worker to write a table",
        lambda: instance.row(table, export.pk, columns)["progress"] > 0,
    )
    before = instance.row(table, export.pk, columns)
    assert before["status"] == "running" and f":{first.pid}:" in before["lease_owner"]
    work = instance.media / "exports" / ".work"
    assert len(list(work.iterdir())) == 1  # the killed attempt's half-built tables

    # when: the first worker is SIGKILLed mid-build, the second takes jobs, and the sweep runs
    instance.kill(first)
    instance.consume("fault2", "exports")
    instance.run_sweep(table, export.pk)

    # then: the export is done, by the new worker on attempt 2, with exactly one zip on disk
    done = instance.wait_for(
        "the export to finish",
        lambda: (
            (r := instance.row(table, export.pk, columns))["status"] in ("done", "failed") and r
        ),
    )
    assert done["status"] == "done", done
    assert done["attempts"] == 2
    assert f":{second.pid}:" in done["lease_owner"]
    zips = sorted((instance.media / "exports").glob("*.zip"))
    assert [z.name for z in zips] == [done["file_name"]]
    assert hashlib.sha256(zips[0].read_bytes()).hexdigest() == done["sha256"]
    # and the dead attempt's files were removed
    assert list(work.iterdir()) == []


def test_a_killed_worker_s_classification_run_resumes_without_paying_twice(
    instance,
    make_classified_study,  # noqa: F811 - the fixture imported above
    enroll,
    chat,  # noqa: F811
    upstream,  # noqa: F811
    owner,
    settings,
):
    from studyplatform.classifiers.models import ClassifierLabel
    from studyplatform.classifiers.services import CHUNK_MIN, classification_run_create
    from tests.classifiers.conftest import CONSENTING

    # given: more messages than one stored chunk, and a queued run on a slow worker whose judge
    # is the loopback fake upstream (registered for the workers as the operator would)
    study = make_classified_study()
    messages = CHUNK_MIN + 8
    for p in range(messages // 8):  # 8 each: under the per-minute message limit
        person = enroll(study, choices=CONSENTING)
        chat(person, [f"p{p} m{i} [[reply: no]]" if i % 2 == 0 else "ok" for i in range(15)])
    run = classification_run_create(
        study=study,
        created_by=owner,
        data={"max_judge_calls": 1000, "concurrency": 1},
        enqueue=False,
    )
    instance.env["MODEL_ENDPOINTS"] = json.dumps(settings.MODEL_ENDPOINTS)
    instance.share()
    first, second = instance.start_two_workers(job_queue="analysis")
    celery_app.send_task(
        "studyplatform.classifiers.tasks.classification_run_task", args=[run.pk], queue="analysis"
    )
    table = "classifiers_classificationrun"
    columns = ["status", "units_done", "judge_calls", "lease_owner", "attempts"]
    instance.wait_for(
        "the first worker to store its first chunk",
        lambda: instance.row(table, run.pk, columns)["units_done"] > 0,
        timeout=60,
    )
    before = instance.row(table, run.pk, columns)
    assert before["status"] == "running" and f":{first.pid}:" in before["lease_owner"]

    # when: it is SIGKILLed while it pauses after that chunk, and the sweep hands the run over
    instance.kill(first)
    asked_by_first = len(upstream.requests)
    instance.consume("fault2", "analysis")
    instance.run_sweep(table, run.pk)

    # then: done on attempt 2 by the new worker, which asked only about what was not stored
    done = instance.wait_for(
        "the run to finish",
        lambda: (r := instance.row(table, run.pk, columns))["status"] in ("done", "failed") and r,
        timeout=60,
    )
    assert done["status"] == "done", done
    assert done["attempts"] == 2 and f":{second.pid}:" in done["lease_owner"]
    assert done["units_done"] == messages
    stored_by_first = before["judge_calls"]
    assert len(upstream.requests) - asked_by_first == messages - stored_by_first
    if instance.sqlite_file is None:
        assert ClassifierLabel.objects.filter(run_id=run.pk).count() == messages
