"""Benchmark the chat proxy under open-loop load, beside a lean relay on the same cores.

    .venv/bin/python benchmarks/chat_proxy.py [--database-url postgresql://u:pw@127.0.0.1:5432/postgres]
        [--workers 2] [--rates 5,10,20,40] [--duration 30] [--tokens 40] [--delay-ms 20]
        [--burst 50] [--burst-rounds 3] [--participants N] [--seed 1] [--slice 5]

What it answers: how much time-to-first-token (TTFT) and CPU the platform adds on top of the
model server when new messages arrive at a given rate, compared in the same run with the
smallest forwarder that still stores the message first (benchmarks/lean_relay.py).

Set-up (all throwaway, removed at the end even on failure or Ctrl-C): an embedded Redis (unless
REDIS_URL is set); the loopback fake upstream (tests/support/fake_upstream.py, an ASGI app
under uvicorn) in its own process; a database: with --database-url (or DATABASE_URL) a
PostgreSQL server on which a fresh database ``studyplatform_bench_<pid>`` is created and later
dropped (the URL's own database is only used to connect), otherwise a temporary SQLite file
(WAL, as in settings).
``manage.py migrate`` runs in a subprocess, then this process seeds through the real services: a
study from examples/companion-rct.yaml whose arms point at the fake upstream, rate/token limits
raised out of the way, moved to recruiting; P participants enrolled, one conversation each, a
database session and CSRF token per participant. Two servers are started on the same machine,
each as ``uvicorn ... --workers W`` (uvloop + httptools when installed): the platform
(studyplatform.asgi, production settings: DEBUG=False, throwaway keys) and the lean relay (a
bare ASGI app doing one encrypted, idempotent INSERT into its own table in the same database,
then forwarding the upstream's stream with httpx).

Load, from this process (benchmarks/loopback_client.py, a minimal HTTP/1.1 client, on uvloop):
OPEN LOOP. At each rate R, for each of direct (POST {upstream}/v1/chat/completions), relay (POST
/relay) and platform (what the chat page does: POST /p/chat/c/<id>/reply/ with a session cookie,
CSRF token and a unique client_request_id; the response is the SSE stream), requests start at
Poisson arrival times (exponential gaps, mean 1/R, fixed --seed) for --duration seconds, whether
or not earlier replies have finished. Every reply is --tokens tokens, --delay-ms apart. A
platform request goes to a conversation with no reply in flight (a person does not type during a
reply); if all P are busy it shares one, and the report says how often. Participants are signed
in through the configured session engine and each opens their chat page once (unmeasured), as
a person does before the first message. Before the first rate each kind gets an unmeasured
warm-up of 6 s at 20/s (~120 requests), and the database is VACUUM ANALYZEd after seeding, so
that the first rate measures a running server like the later ones: a fresh platform process
needs ~40 sends before its sends take their steady time (measured in-process: ~8 ms from
request to response start over the first 20 sends, ~5.3 ms from the 40th on; a first rate of
5/s after the earlier 3 s warm-up at 5/s measured that start-up, 8.0 ms against 6.2 and 6.0 ms
at 6/s and 5.5/s right after it), and autovacuum analyzing the freshly seeded tables would
otherwise run during the first phases. Within a rate the three kinds take turns of at most
--slice seconds (default 5) until each has had --duration seconds, each kind first in turn and
the servers left to go idle after every turn, so that the machine's speed drifting during a run
weighs on the three alike (--slice 0: one turn each, the whole duration). After the rates,
--burst-rounds bursts of --burst requests sent in the same instant (asyncio.gather), per kind.

Figures:
- TTFT: request start to the first chunk with text (direct and relay: the OpenAI SSE chunk;
  platform: the first ``event: delta`` frame). Added TTFT = TTFT - the median direct TTFT at the
  same rate (bursts: of the direct burst of the same round); p50/p95 over the phase's
  requests that succeeded (a collapsing server's figures are therefore flattering: read them with
  its error count).
- errors: non-2xx, an ``event: error`` frame, a ``done`` frame that is not complete, no end of
  stream, or a timeout (30 s + 4x the reply's length per request).
- web CPU per message: user+system time of the server processes (uvicorn and its workers, from
  /proc) over the phase / requests started in it. PostgreSQL's own processes are not included.
- afterwards the exactly-once check (ORM, this process): every platform request must have
  exactly one user message and one assistant reply (its child) that is complete and non-empty;
  ``lost`` counts the requests for which that does not hold (broken down in the report), and
  replies whose stored text differs from what was streamed are counted too.

The last line is machine-readable (values per rate in --rates order; the ratio's denominator,
the relay's added p50, is floored at 1 ms; cpu_ms_per_msg is the platform's over all rate
phases; burst50_p50_ms the platform's over all bursts; errors counts the platform's):
rates=5,10,20,40 added_p50_ms=<a,b,c,d> added_p95_ms=<a,b,c,d> relay_p50_ms=<a,b,c,d>
worst_ratio_vs_relay=<x> cpu_ms_per_msg=<x> burst50_p50_ms=<x> errors=<n> lost=<n>

Bounded: arrivals per phase are capped (3x the expected count), every request has a timeout,
traffic goes only to 127.0.0.1, and every process and the database are removed on exit.
Targets (issue 19) are printed beside the figures; the script exits 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import lean_relay  # noqa: E402
from benchmarks.loopback_client import LoopbackClient, Reply  # noqa: E402
from benchmarks.support import (  # noqa: E402
    Postgres,
    fake_upstream_command,
    machine_info,
    migrate_and_setup,
    production_env,
    recruiting_study,
)

MODEL_NAME = "bench-model"
BENCH_ENDPOINT = "bench-upstream"
STUDY_SLUG = "bench"
POSTGRES_SCHEMES = ("postgres://", "postgresql://")
WARMUP_RATE = 20.0
WARMUP_S = 6.0
# Issue 19's targets, printed beside the figures.
TARGET_CPU_MS = 20.0
TARGET_P50_AT_20 = 10.0
TARGET_P95_AT_20 = 25.0
TARGET_P95_AT_40 = 60.0
TARGET_RATIO = 2.5
TARGET_BURST_P50 = 150.0
RATIO_FLOOR_MS = 1.0


# -- processes and resources ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _web_up(response: httpx.Response) -> bool:
    """/healthz from a web process whose own dependencies answer. The benchmark runs no Celery
    worker or beat, so the health endpoint's worker and beat checks fail (503) by design."""
    with contextlib.suppress(ValueError):
        checks = response.json().get("checks", {})
        return all(checks.get(name, {}).get("ok") for name in ("database", "redis"))
    return False


def wait_http(
    url: str, proc: subprocess.Popen, what: str, timeout_s: float = 180.0, accept=None
) -> None:
    """Poll `url` until it answers 200 (or `accept(response)` is true); fail early if `proc`
    dies. The default wait is long because on a loaded shared machine two workers importing
    Django can take a minute."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before answering")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200 or (accept is not None and accept(response)):
                return
            last = f"HTTP {response.status_code}: {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer at {url} within {timeout_s:g} s ({last})")
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def analyze(url: str) -> None:
    """VACUUM ANALYZE the benchmark's database, as pgbench does before it measures."""
    if url.startswith(POSTGRES_SCHEMES):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        return
    import sqlite3

    with contextlib.closing(sqlite3.connect(lean_relay.sqlite_path(url))) as conn:
        conn.execute("ANALYZE")


def uvicorn_command(app: str, port: int, workers: int, *, factory: bool = False) -> list[str]:
    """The same server line for the platform, the relay and the fake upstream, so that the
    comparison differs only in the application."""
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    if factory:
        command.append("--factory")
    if importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools"):
        command += ["--loop", "uvloop", "--http", "httptools"]
    return command


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc; with `tree`,
    plus its children's (uvicorn's worker processes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state) of proc(5)
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + (sum(cpu_seconds(child) for child in children(pid)) if tree else 0.0)


def children(pid: int) -> list[int]:
    """Child processes of `pid` (uvicorn's workers when it runs more than one)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


# -- seeding (in this process, through the real services) -----------------------------------------


@dataclass
class Seeded:
    participant_id: int
    conversation_id: int
    session_key: str
    csrf: str

    @property
    def cookie(self) -> str:
        return f"sessionid={self.session_key}; csrftoken={self.csrf}"


def seed(*, participants: int) -> list[Seeded]:
    from django.conf import settings
    from django.middleware.csrf import _get_new_csrf_string
    from django.utils.module_loading import import_string

    from studyplatform.chat.services import conversation_create
    from studyplatform.participants.services import JoinContext, participant_enroll
    from studyplatform.participants.session import SESSION_KEY, SESSION_STUDY_KEY

    study, _researcher = recruiting_study(
        slug=STUDY_SLUG, endpoint=BENCH_ENDPOINT, model=MODEL_NAME, username="bench-researcher"
    )
    seeded = []
    for i in range(participants):
        participant = participant_enroll(
            study=study,
            answers={"age": 30, "uses_chatbots": True, "gender": "woman"},
            language="en",
            timezone_name="America/Sao_Paulo",
            choices={"agree": True, "adult": True, "share_chats": True, "import_history": True},
            signature_name="Bench Person",
            email=f"bench{i}@example.org",
            join=JoinContext(),
        )
        conversation = conversation_create(participant=participant)
        # The configured engine, as sign-in writes it (Redis copy included).
        session = import_string(f"{settings.SESSION_ENGINE}.SessionStore")()
        session[SESSION_KEY] = participant.pk
        session[SESSION_STUDY_KEY] = participant.study_id
        session.set_expiry(settings.PARTICIPANT_SESSION_AGE_S)
        session.create()
        seeded.append(
            Seeded(participant.pk, conversation.pk, session.session_key, _get_new_csrf_string())
        )
    return seeded


def open_chat_pages(platform_url: str, people: list[Seeded]) -> None:
    """Each participant opens their conversation's page once, unmeasured, as a person does
    before typing the first message: the page's sign-in and consent check leaves the session
    as every later send finds it. Without this, each participant's first send in the measured
    phases paid a first visit's cost (for 100 participants, most of the 5/s phase)."""
    with httpx.Client(base_url=platform_url, timeout=30.0) as client:
        for who in people:
            response = client.get(
                f"/p/chat/c/{who.conversation_id}/", headers={"Cookie": who.cookie}
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"chat page of participant {who.participant_id}: HTTP {response.status_code}"
                )


# -- one request of each kind ---------------------------------------------------------------------


@dataclass
class Sample:
    kind: str  # direct, relay or platform
    phase: str
    index: int
    client_request_id: str = ""
    ttft: float | None = None  # seconds from the request start
    e2e: float | None = None
    error: str = ""
    text: str = ""
    lag: float = 0.0  # how late the client started it against its scheduled arrival


def prompt(tokens: int, delay_ms: int, index: int) -> str:
    return f"[[tokens: {tokens}]] [[delay_ms: {delay_ms}]] hello {index}"


_FIRST_TEXT = re.compile(rb'"content":"[^"]')  # an OpenAI chunk that carries text
_FIRST_DELTA = re.compile(rb"event: delta\n")  # the platform's first text frame


def upstream_body(text: str) -> dict:
    return {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def check_openai_stream(body: bytes, sample: Sample) -> None:
    """Direct and relay replies must end with ``data: [DONE]``."""
    if not body.rstrip().endswith(b"data: [DONE]"):
        sample.error = "no_done"


async def direct_one(client: LoopbackClient, sample: Sample, text: str) -> None:
    t0 = time.perf_counter()
    reply = await client.post("/chat/completions", upstream_body(text), first=_FIRST_TEXT)
    record(sample, reply, t0)
    if not sample.error:
        check_openai_stream(reply.body, sample)


async def relay_one(client: LoopbackClient, sample: Sample, text: str, conversation: int) -> None:
    body = {
        "text": text,
        "client_request_id": sample.client_request_id,
        "conversation": conversation,
    }
    t0 = time.perf_counter()
    reply = await client.post("/relay", body, first=_FIRST_TEXT)
    record(sample, reply, t0)
    if not sample.error and not reply.content_type.startswith("text/event-stream"):
        sample.error = "not_a_stream"  # e.g. {"duplicate": true}: nothing was relayed
    if not sample.error:
        check_openai_stream(reply.body, sample)


def record(sample: Sample, reply: Reply, t0: float) -> None:
    """TTFT and e2e from the reply's timestamps; a non-200 answer is an error."""
    if reply.status != 200:
        sample.error = f"http_{reply.status}"
        return
    if reply.first_at is not None:
        sample.ttft = reply.first_at - t0
    sample.e2e = reply.ended_at - t0


def check_platform_stream(body: bytes, sample: Sample) -> None:
    """The platform's SSE frames: the text of the `delta` frames is what the participant saw;
    the stream must end with a complete `done` frame."""
    parts: list[str] = []
    done = False
    for frame in body.decode().split("\n\n"):
        event = data = ""
        for line in frame.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if event == "delta":
            parts.append(json.loads(data)["t"])
        elif event == "done":
            done = True
            if json.loads(data).get("status") != "complete":
                sample.error = "done_not_complete"
            break
        elif event == "error":
            sample.error = "error_event:" + str(json.loads(data).get("code", ""))
            break
    sample.text = "".join(parts)
    if not done and not sample.error:
        sample.error = "no_done"


async def platform_one(client: LoopbackClient, who: Seeded, sample: Sample, text: str) -> None:
    t0 = time.perf_counter()
    reply = await client.post(
        f"/p/chat/c/{who.conversation_id}/reply/",
        {"text": text, "client_request_id": sample.client_request_id},
        headers={"Cookie": who.cookie, "X-CSRFToken": who.csrf},
        first=_FIRST_DELTA,
    )
    record(sample, reply, t0)
    if not sample.error:
        check_platform_stream(reply.body, sample)


async def guarded(coro, sample: Sample, timeout_s: float) -> Sample:
    """Run one request; any failure is recorded on the sample, never raised."""
    try:
        await asyncio.wait_for(coro, timeout_s)
    except TimeoutError:
        sample.error = "timeout"
    except Exception as exc:  # a failed request is a counted error, not a crash
        sample.error = type(exc).__name__
    return sample


# -- open-loop and burst load ---------------------------------------------------------------------


@dataclass
class Phase:
    kind: str
    label: str  # "warm-up", "rate 20", "burst 1"
    rate: float | None  # None for a burst
    wall: float
    samples: list[Sample]
    cpu: dict[str, float]  # CPU seconds per process over the phase (see Load.cpu_now)
    shared: int = 0  # platform requests sent to a conversation that had a reply in flight


class Load:
    """Sends the three kinds of request and times them; one instance per run."""

    def __init__(
        self,
        *,
        urls: dict[str, str],
        people: list[Seeded],
        tokens: int,
        delay_ms: int,
        pids: dict[str, int],
        seed: int,
    ) -> None:
        self.urls = urls
        self.people = people
        self.free: deque[Seeded] = deque(people)
        self.shared = 0
        self.tokens = tokens
        self.delay_ms = delay_ms
        self.pids = pids
        self.seed = seed
        self.counter = 0
        # A stream should take tokens * delay; anything far beyond that is a stuck request.
        self.timeout_s = 30.0 + 4 * tokens * delay_ms / 1000
        self.clients: dict[str, LoopbackClient] = {}

    async def __aenter__(self) -> Load:
        # One pool per target, without a connection limit: the client never queues a request
        # itself (that would turn the open loop into a closed one).
        for kind in ("direct", "relay", "platform"):
            self.clients[kind] = LoopbackClient(self.urls["upstream" if kind == "direct" else kind])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in self.clients.values():
            await client.aclose()

    def cpu_now(self) -> dict[str, float]:
        """CPU seconds so far: each server with its worker processes, the fake upstream, and
        this client."""
        return {name: cpu_seconds(pid, tree=name != "client") for name, pid in self.pids.items()}

    def _new(self, kind: str, label: str) -> Sample:
        self.counter += 1
        request_id = f"bench-{self.counter}-{uuid.uuid4().hex[:20]}" if kind != "direct" else ""
        return Sample(kind, label, self.counter, client_request_id=request_id)

    async def _run(self, kind: str, sample: Sample) -> Sample:
        text = prompt(self.tokens, self.delay_ms, sample.index)
        if kind == "direct":
            coro = direct_one(self.clients[kind], sample, text)
            return await guarded(coro, sample, self.timeout_s)
        if kind == "relay":
            conversation = sample.index % max(1, len(self.people))
            coro = relay_one(self.clients[kind], sample, text, conversation)
            return await guarded(coro, sample, self.timeout_s)
        # A person does not type while a reply streams: take a conversation with none in
        # flight; only when every one is busy (the platform is falling behind) share one.
        owned = bool(self.free)
        if owned:
            who = self.free.popleft()
        else:
            who = self.people[self.shared % len(self.people)]
            self.shared += 1
        try:
            coro = platform_one(self.clients[kind], who, sample, text)
            return await guarded(coro, sample, self.timeout_s)
        finally:
            if owned:
                self.free.append(who)

    async def settle(self, max_s: float = 90.0) -> bool:
        """Wait until the servers are idle: a request the client gave up on (timeout) is still
        being served, and that backlog must not eat into the next phase (it would slow even
        the direct baseline). Idle: the platform, relay and fake upstream used under 10% of one
        core over the last half second. False if that did not happen within `max_s`."""
        names = ("platform", "relay", "upstream")
        deadline = time.perf_counter() + max_s
        before = sum(cpu_seconds(self.pids[n], tree=True) for n in names)
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.5)
            now = sum(cpu_seconds(self.pids[n], tree=True) for n in names)
            if now - before < 0.05:
                return True
            before = now
        return False

    async def open_loop(self, kind: str, rate: float, duration_s: float, label: str) -> Phase:
        """Requests at Poisson arrival times for `duration_s`, each started on time whatever
        the earlier ones are doing. The arrival times depend on the label (the rate), not the
        kind, so direct, relay and platform get the same sequence."""
        rng = random.Random(f"{self.seed}-{label}")
        arrivals: list[float] = []
        cap = int(rate * duration_s * 3) + 10
        at = rng.expovariate(rate)
        while at < duration_s and len(arrivals) < cap:
            arrivals.append(at)
            at += rng.expovariate(rate)
        loop = asyncio.get_running_loop()
        shared0 = self.shared
        before = self.cpu_now()
        t0 = time.perf_counter()
        start = loop.time()
        tasks = []
        samples = []
        for at in arrivals:
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sample = self._new(kind, label)
            sample.lag = max(0.0, loop.time() - (start + at))
            samples.append(sample)
            tasks.append(asyncio.create_task(self._run(kind, sample)))
        await asyncio.gather(*tasks)  # each one bounded by self.timeout_s
        wall = time.perf_counter() - t0
        cpu = {name: value - before[name] for name, value in self.cpu_now().items()}
        return Phase(kind, label, rate, wall, samples, cpu, self.shared - shared0)

    async def burst(self, kind: str, n: int, label: str) -> Phase:
        """`n` requests in the same instant."""
        samples = [self._new(kind, label) for _ in range(n)]
        shared0 = self.shared
        before = self.cpu_now()
        t0 = time.perf_counter()
        await asyncio.gather(*(self._run(kind, s) for s in samples))
        wall = time.perf_counter() - t0
        cpu = {name: value - before[name] for name, value in self.cpu_now().items()}
        return Phase(kind, label, None, wall, samples, cpu, self.shared - shared0)


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fmt(value: float, digits: int = 1) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def ttft_ms(phase: Phase) -> list[float]:
    return [s.ttft * 1000 for s in phase.samples if not s.error and s.ttft is not None]


def errors_of(phase: Phase) -> int:
    return sum(1 for s in phase.samples if s.error)


@dataclass
class KindStats:
    """One kind's figures at one rate (or over the bursts)."""

    requests: int
    errors: int
    added: list[float]  # ms, per successful request
    cpu_ms_per_msg: float
    shared: int = 0

    @property
    def p50(self) -> float:
        return percentile(self.added, 0.5)

    @property
    def p95(self) -> float:
        return percentile(self.added, 0.95)


def stats_against(phases: list[Phase], baselines: list[Phase], server: str) -> KindStats:
    """Added TTFT of `phases` against the median direct TTFT of the paired baseline phase;
    CPU of `server` (the process tree serving this kind) per request."""
    added: list[float] = []
    for phase, base in zip(phases, baselines, strict=True):
        direct = ttft_ms(base)
        reference = statistics.median(direct) if direct else float("nan")
        added.extend(t - reference for t in ttft_ms(phase))
    requests = sum(len(p.samples) for p in phases)
    cpu = sum(p.cpu.get(server, float("nan")) for p in phases)
    return KindStats(
        requests=requests,
        errors=sum(errors_of(p) for p in phases),
        added=added,
        cpu_ms_per_msg=cpu * 1000 / requests if requests else float("nan"),
        shared=sum(p.shared for p in phases),
    )


# -- the exactly-once check ----------------------------------------------------------------------


@dataclass
class Verification:
    expected: int = 0
    found: int = 0  # one user message + one complete, non-empty reply
    not_stored: int = 0
    stored_twice: int = 0
    no_single_reply: int = 0  # one user message, but not exactly one reply
    reply_not_complete: int = 0
    content_mismatch: int = 0  # stored reply text differs from what was streamed
    lost_without_error: int = 0  # lost, and the client was not told (no error seen)

    @property
    def lost(self) -> int:
        return self.expected - self.found


def verify(samples: list[Sample]) -> Verification:
    from studyplatform.chat.models import Message

    by_request = {s.client_request_id: s for s in samples}
    ids = list(by_request)
    users: dict[str, list[int]] = {}
    for start in range(0, len(ids), 500):  # SQLite caps the parameters of one statement
        for row in Message.objects.filter(
            role=Message.Role.USER, client_request_id__in=ids[start : start + 500]
        ).values("id", "client_request_id"):
            users.setdefault(row["client_request_id"], []).append(row["id"])
    user_ids = [rows[0] for rows in users.values() if len(rows) == 1]
    replies: dict[int, list[dict]] = {}
    for start in range(0, len(user_ids), 500):
        for row in Message.objects.filter(
            role=Message.Role.ASSISTANT, parent_id__in=user_ids[start : start + 500]
        ).values("parent_id", "status", "content"):
            replies.setdefault(row["parent_id"], []).append(row)
    result = Verification(expected=len(by_request))
    for request_id, sample in by_request.items():
        rows = users.get(request_id, [])
        ok = False
        if not rows:
            result.not_stored += 1
        elif len(rows) > 1:
            result.stored_twice += 1
        else:
            answers = replies.get(rows[0], [])
            if len(answers) != 1:
                result.no_single_reply += 1
            elif answers[0]["status"] != Message.Status.COMPLETE or not answers[0]["content"]:
                result.reply_not_complete += 1
            else:
                ok = True
                result.found += 1
                if not sample.error and answers[0]["content"] != sample.text:
                    result.content_mismatch += 1
        if not ok and not sample.error:
            result.lost_without_error += 1
    return result


# -- the run and its report ----------------------------------------------------------------------

KINDS = ("direct", "relay", "platform")


@dataclass
class Results:
    warmups: list[Phase] = field(default_factory=list)
    rates: dict[float, dict[str, Phase]] = field(default_factory=dict)
    bursts: dict[str, list[Phase]] = field(default_factory=lambda: {k: [] for k in KINDS})
    unsettled: list[str] = field(default_factory=list)  # phases the servers were still busy after

    def every_phase(self) -> list[Phase]:
        phases = list(self.warmups)
        for by_kind in self.rates.values():
            phases.extend(by_kind.values())
        for runs in self.bursts.values():
            phases.extend(runs)
        return phases


def rate_stats(phases: dict[str, Phase]) -> dict[str, KindStats]:
    return {
        kind: stats_against([phases[kind]], [phases["direct"]], kind)
        for kind in ("relay", "platform")
    }


def rate_line(rate: float, phases: dict[str, Phase]) -> str:
    s = rate_stats(phases)
    plat, relay = s["platform"], s["relay"]
    direct = ttft_ms(phases["direct"])
    lag = [x.lag * 1000 for p in phases.values() for x in p.samples]
    ratio = plat.p50 / max(relay.p50, RATIO_FLOOR_MS)
    return (
        f"rate {rate:g}/s: platform added TTFT p50/p95 {fmt(plat.p50)}/{fmt(plat.p95)} ms, "
        f"errors {plat.errors}/{plat.requests}, CPU {fmt(plat.cpu_ms_per_msg)} ms/msg"
        + (f", {plat.shared} sent to a busy conversation" if plat.shared else "")
        + f" | relay {fmt(relay.p50)}/{fmt(relay.p95)} ms, errors {relay.errors}/"
        f"{relay.requests}, CPU {fmt(relay.cpu_ms_per_msg)} ms/msg | direct TTFT p50 "
        f"{fmt(percentile(direct, 0.5))} ms | ratio {fmt(ratio, 2)} | client lag p95 "
        f"{fmt(percentile(lag, 0.95))} ms"
    )


def joined(parts: list[Phase], label: str) -> Phase:
    """One kind's slices of a rate as one phase: their requests, wall time and CPU together."""
    first = parts[0]
    return Phase(
        first.kind,
        label,
        first.rate,
        sum(p.wall for p in parts),
        [s for p in parts for s in p.samples],
        {name: sum(p.cpu[name] for p in parts) for name in first.cpu},
        sum(p.shared for p in parts),
    )


async def run_load(
    load: Load,
    *,
    rates: list[float],
    duration_s: float,
    slice_s: float,
    burst: int,
    burst_rounds: int,
) -> Results:
    results = Results()
    async with load:
        # Unmeasured: imports, connection pools, the first query plans.
        for kind in KINDS:
            results.warmups.append(await load.open_loop(kind, WARMUP_RATE, WARMUP_S, "warm-up"))
        print("  warm-up done", flush=True)
        await load.settle()
        for rate in rates:
            # The kinds take turns in slices of the rate's duration, each kind first in turn,
            # so that the machine's speed drifting over the minutes of a run (the relay's own
            # p50 moved by a third between neighbouring phases) weighs on all three alike.
            count = max(1, math.ceil(duration_s / slice_s)) if slice_s > 0 else 1
            parts: dict[str, list[Phase]] = {kind: [] for kind in KINDS}
            for number in range(count):
                turn = number % len(KINDS)
                for kind in KINDS[turn:] + KINDS[:turn]:
                    label = f"rate {rate:g}" + (f" slice {number + 1}" if count > 1 else "")
                    parts[kind].append(await load.open_loop(kind, rate, duration_s / count, label))
                    # Let after-the-reply work (on-commit tasks, abandoned requests) finish
                    # outside the next slice's window.
                    if not await load.settle():
                        results.unsettled.append(f"{label} {kind}")
            results.rates[rate] = {kind: joined(parts[kind], f"rate {rate:g}") for kind in KINDS}
            print(rate_line(rate, results.rates[rate]), flush=True)
        for number in range(1, burst_rounds + 1):
            for kind in KINDS:
                results.bursts[kind].append(await load.burst(kind, burst, f"burst {number}"))
                if not await load.settle():
                    results.unsettled.append(f"burst {number} {kind}")
        print(f"  {burst_rounds} bursts of {burst} per kind done", flush=True)
    return results


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(
    *,
    results: Results,
    verification: Verification,
    args: argparse.Namespace,
    rates: list[float],
    info: dict[str, str],
    database: str,
    server: str,
    relay_rows: int,
) -> str:
    print()
    print("Chat proxy benchmark (open loop, beside a lean relay)")
    print(f"  machine   {info['nproc']} cores (nproc), {info['cpu']}")
    print(f"            load avg before {info['load']}, after {machine_info()['load']}")
    print(f"  python    {platform.python_version()}; servers: {server}")
    print(f"  database  {database}")
    print(
        f"  workload  Poisson arrivals at {','.join(f'{r:g}' for r in rates)} new messages/s, "
        f"{args.duration:g} s per kind and rate; replies of {args.tokens} tokens "
        f"{args.delay_ms} ms apart; {len(results.bursts['platform'])} bursts of {args.burst}; "
        f"{args.participants} participants"
    )
    print()
    print(
        f"  {'rate/s':>6} {'kind':<9}{'sent':>6}{'errors':>7}{'TTFT p50':>10}{'added p50':>10}"
        f"{'added p95':>10}{'CPU ms/msg':>11}"
    )
    per_rate: dict[float, dict[str, KindStats]] = {}
    for rate in rates:
        phases = results.rates[rate]
        per_rate[rate] = rate_stats(phases)
        for kind in KINDS:
            phase = phases[kind]
            s = per_rate[rate].get(kind)
            cpu = s.cpu_ms_per_msg if s else float("nan")
            print(
                f"  {rate:>6g} {kind:<9}{len(phase.samples):>6}{errors_of(phase):>7}"
                f"{fmt(percentile(ttft_ms(phase), 0.5)):>10}"
                f"{fmt(s.p50 if s else float('nan')):>10}{fmt(s.p95 if s else float('nan')):>10}"
                f"{fmt(cpu):>11}"
            )
    bursts = {
        kind: stats_against(results.bursts[kind], results.bursts["direct"], kind)
        for kind in ("relay", "platform")
    }
    print()
    for kind in ("platform", "relay"):
        b = bursts[kind]
        print(
            f"  burst of {args.burst} ({kind}): added TTFT p50 {fmt(b.p50)} ms, p95 {fmt(b.p95)} "
            f"ms, errors {b.errors}/{b.requests}"
        )

    phases = results.every_phase()
    tokens = sum(len(p.samples) for p in phases) * args.tokens
    upstream_cpu = sum(p.cpu["upstream"] for p in phases)
    client_cpu = sum(p.cpu["client"] for p in phases)
    requests = sum(len(p.samples) for p in phases)
    wall = sum(p.wall for p in phases)
    print()
    print(
        f"  fake upstream CPU {fmt(upstream_cpu * 1e6 / tokens if tokens else float('nan'))} "
        f"us per token ({fmt(100 * upstream_cpu / wall if wall else float('nan'))}% of one "
        f"core on average); this client {fmt(client_cpu * 1000 / requests if requests else 0)} "
        f"ms per request"
    )
    relay_sent = sum(len(p.samples) for p in phases if p.kind == "relay")
    print(f"  lean relay: {relay_rows} messages stored for {relay_sent} requests sent to it")
    print(
        f"  exactly-once: {verification.found}/{verification.expected} platform requests "
        f"(warm-up and bursts included) have one user message and one complete reply; lost "
        f"{verification.lost} (not stored {verification.not_stored}, stored twice "
        f"{verification.stored_twice}, not exactly one reply {verification.no_single_reply}, "
        f"reply not complete {verification.reply_not_complete}; of the lost, "
        f"{verification.lost_without_error} without an error shown); "
        f"{verification.content_mismatch} stored replies differ from the streamed text"
    )
    kinds: dict[str, int] = {}
    for p in phases:
        for s in p.samples:
            if s.error:
                key = f"{p.kind}:{s.error}"
                kinds[key] = kinds.get(key, 0) + 1
    if results.unsettled:
        print(
            "  WARNING: the servers were still busy 90 s after "
            + ", ".join(results.unsettled)
            + "; the next phase's figures include that backlog"
        )
    if kinds:
        print("  errors by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))

    # Totals for the last line (the platform's figures).
    measured = [results.rates[r]["platform"] for r in rates]
    cpu_total = sum(p.cpu["platform"] for p in measured)
    sent = sum(len(p.samples) for p in measured)
    cpu_per_msg = cpu_total * 1000 / sent if sent else float("nan")
    ratios = [
        per_rate[r]["platform"].p50 / max(per_rate[r]["relay"].p50, RATIO_FLOOR_MS) for r in rates
    ]
    worst = max(ratios, key=lambda x: -math.inf if math.isnan(x) else x)
    errors = sum(errors_of(p) for p in measured) + bursts["platform"].errors
    burst_p50 = bursts["platform"].p50

    print()
    print("  targets (issue 19):")
    print(
        f"    web CPU per message          {fmt(cpu_per_msg):>8} ms  <= 20   "
        f"{verdict(cpu_per_msg <= TARGET_CPU_MS)}"
    )
    if 20 in per_rate:
        s20 = per_rate[20]["platform"]
        print(
            f"    added p50 at 20/s            {fmt(s20.p50):>8} ms  <= 10   "
            f"{verdict(s20.p50 <= TARGET_P50_AT_20)}"
        )
        print(
            f"    added p95 at 20/s            {fmt(s20.p95):>8} ms  <= 25   "
            f"{verdict(s20.p95 <= TARGET_P95_AT_20)}"
        )
    if 40 in per_rate:
        s40 = per_rate[40]["platform"]
        print(
            f"    added p95 at 40/s, 0 errors  {fmt(s40.p95):>8} ms  <= 60   "
            f"{verdict(s40.p95 <= TARGET_P95_AT_40 and s40.errors == 0)} ({s40.errors} errors)"
        )
    print(
        f"    worst ratio to the relay     {fmt(worst, 2):>8}     <= 2.5  "
        f"{verdict(worst <= TARGET_RATIO)}"
    )
    print(
        f"    burst of {args.burst}, added p50      {fmt(burst_p50):>8} ms  <= 150  "
        f"{verdict(burst_p50 <= TARGET_BURST_P50)}"
    )
    print(
        f"    lost                         {verification.lost:>8}     0       "
        f"{verdict(verification.lost == 0)}"
    )
    print()

    def series(values: list[float]) -> str:
        return ",".join(fmt(v) for v in values)

    return (
        f"rates={','.join(f'{r:g}' for r in rates)} "
        f"added_p50_ms={series([per_rate[r]['platform'].p50 for r in rates])} "
        f"added_p95_ms={series([per_rate[r]['platform'].p95 for r in rates])} "
        f"relay_p50_ms={series([per_rate[r]['relay'].p50 for r in rates])} "
        f"worst_ratio_vs_relay={fmt(worst, 2)} cpu_ms_per_msg={fmt(cpu_per_msg)} "
        f"burst50_p50_ms={fmt(burst_p50)} errors={errors} lost={verification.lost}"
    )


# -- orchestration -------------------------------------------------------------------------------


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


async def cancel_on_signal(coro):
    """Run `coro`; SIGINT or SIGTERM cancels it (its requests end, their connections close)
    instead of raising KeyboardInterrupt inside whatever callback the loop is running."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await coro
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates: not a list of numbers: {text!r}") from None
    if not rates or any(not 0 < r <= 500 for r in rates):
        raise argparse.ArgumentTypeError("--rates: each rate must be > 0 and <= 500 per second")
    return rates


def start(command: list[str], env: dict, log: Path, logs: contextlib.ExitStack):
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=logs.enter_context(log.open("w")),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        type=parse_rates,
        default=[5.0, 10.0, 20.0, 40.0],
        help="new messages per second, comma-separated (default 5,10,20,40)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="seconds of arrivals per kind and rate (default 30)",
    )
    parser.add_argument(
        "--slice",
        type=float,
        default=5.0,
        help="seconds of one kind's turn: each rate's duration is split into turns that the "
        "direct, relay and platform kinds take in rotation (default 5; 0: one turn each)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="uvicorn worker processes for the platform and the relay",
    )
    parser.add_argument("--tokens", type=int, default=40, help="tokens per reply")
    parser.add_argument("--delay-ms", type=int, default=20, help="upstream delay between tokens")
    parser.add_argument("--burst", type=int, default=50, help="requests per burst")
    parser.add_argument("--burst-rounds", type=int, default=3, help="bursts per kind")
    parser.add_argument(
        "--participants",
        type=int,
        default=0,
        help="participants (one conversation each); default: enough for "
        "2.5 s of the highest rate, at least --burst",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the arrival times")
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL server to create a throwaway database on (default: DATABASE_URL if it "
        "is PostgreSQL, else a temporary SQLite file)",
    )
    args = parser.parse_args(argv)
    rates = args.rates
    for name in ("duration", "workers", "tokens", "burst", "burst_rounds"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.slice < 0 or 0 < args.slice < 1:
        parser.error("--slice must be 0 (one turn per kind and rate) or at least 1 second")
    if args.duration > 600 or args.workers > 16 or args.burst > 1000 or args.burst_rounds > 20:
        parser.error("--duration <= 600, --workers <= 16, --burst <= 1000, --burst-rounds <= 20")
    if not args.participants:
        args.participants = max(args.burst, math.ceil(max(rates) * 2.5))
    if args.participants < args.burst or args.participants > 2000:
        parser.error("--participants must be at least --burst and at most 2000")
    if not args.database_url and os.environ.get("DATABASE_URL", "").startswith(POSTGRES_SCHEMES):
        args.database_url = os.environ["DATABASE_URL"]
    if args.database_url and not args.database_url.startswith(POSTGRES_SCHEMES):
        parser.error("--database-url must be a PostgreSQL URL (omit it for SQLite)")
    signal.signal(signal.SIGTERM, _interrupt)

    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="sp-chat-bench-"))
    redis_proc = upstream_proc = web_proc = relay_proc = None
    logs = contextlib.ExitStack()
    postgres: Postgres | None = None
    django_ready = False
    last_line = ""
    try:
        env = {
            k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
        }
        if not env.get("REDIS_URL"):
            from studyplatform.core.embedded_redis import start_embedded_redis

            env["REDIS_URL"], redis_proc = start_embedded_redis()
        if args.database_url:
            import psycopg

            try:
                postgres = Postgres(args.database_url, "studyplatform_bench")
            except psycopg.OperationalError as exc:
                print(f"cannot create the benchmark database: {exc}", file=sys.stderr)
                return 2
            env["DATABASE_URL"] = postgres.url
            database = f"postgresql {postgres.server_version} (throwaway {postgres.name})"
        else:
            env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
            import sqlite3

            database = f"sqlite {sqlite3.sqlite_version} (temporary file, WAL)"
        env.update(production_env(workdir, cache_prefix="bench"))
        # Django set up in this process (seeding, verification) must see the same settings.
        os.environ.update(env)
        for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            os.environ.pop(key, None)

        upstream_port = free_port()
        upstream_proc = start(
            fake_upstream_command(upstream_port), env, workdir / "upstream.log", logs
        )
        upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
        wait_http(f"{upstream_url}/models", upstream_proc, "fake upstream")
        # The fake upstream is registered as the operator would register a local vLLM server.
        env["MODEL_ENDPOINTS"] = json.dumps(
            {
                BENCH_ENDPOINT: {
                    "kind": "openai",
                    "base_url": upstream_url,
                    "requires_api_key": False,
                    "models": [MODEL_NAME],
                }
            }
        )
        os.environ["MODEL_ENDPOINTS"] = env["MODEL_ENDPOINTS"]

        migrate_and_setup(env, f"{database.split(' ')[0]}")
        lean_relay.create_table(env["DATABASE_URL"])
        django_ready = True
        print(f"set-up: seeding {args.participants} participants ...", flush=True)
        people = seed(participants=args.participants)
        from django.db import connections

        connections.close_all()
        # Fresh tables, freshly filled: without statistics autovacuum would analyze them (and
        # the planner replan) in the middle of the first measured phases.
        analyze(env["DATABASE_URL"])

        web_port, relay_port = free_port(), free_port()
        web_proc = start(
            uvicorn_command("studyplatform.asgi:application", web_port, args.workers),
            env,
            workdir / "web.log",
            logs,
        )
        relay_env = dict(
            env,
            RELAY_DATABASE_URL=env["DATABASE_URL"],
            RELAY_UPSTREAM_URL=upstream_url,
            RELAY_MODEL=MODEL_NAME,
        )
        relay_proc = start(
            uvicorn_command("benchmarks.lean_relay:app", relay_port, args.workers),
            relay_env,
            workdir / "relay.log",
            logs,
        )
        server = f"uvicorn, {args.workers} worker{'s' if args.workers > 1 else ''} each"
        if "uvloop" in uvicorn_command("x", 0, 1):
            server += ", uvloop + httptools"
        platform_url = f"http://127.0.0.1:{web_port}"
        relay_url = f"http://127.0.0.1:{relay_port}"
        wait_http(f"{platform_url}/healthz", web_proc, "uvicorn (platform)", accept=_web_up)
        wait_http(f"{relay_url}/healthz", relay_proc, "uvicorn (lean relay)")
        open_chat_pages(platform_url, people)

        print(f"measuring (load avg {machine_info()['load']}) ...", flush=True)
        load = Load(
            urls={"upstream": upstream_url, "relay": relay_url, "platform": platform_url},
            people=people,
            tokens=args.tokens,
            delay_ms=args.delay_ms,
            pids={
                "platform": web_proc.pid,
                "relay": relay_proc.pid,
                "upstream": upstream_proc.pid,
                "client": os.getpid(),
            },
            seed=args.seed,
        )
        coro = cancel_on_signal(
            run_load(
                load,
                rates=rates,
                duration_s=args.duration,
                slice_s=args.slice,
                burst=args.burst,
                burst_rounds=args.burst_rounds,
            )
        )
        if importlib.util.find_spec("uvloop"):
            import uvloop

            # The client on the same event loop as the servers, so that it costs as little
            # CPU as it can (the machine is shared with what it measures).
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                results = runner.run(coro)
        else:
            results = asyncio.run(coro)
        # The loop's signal handlers are gone; SIGTERM must still clean up from here on.
        signal.signal(signal.SIGTERM, _interrupt)
        platform_samples = [
            s for p in results.every_phase() if p.kind == "platform" for s in p.samples
        ]
        verification = verify(platform_samples)
        relay_rows = lean_relay.count_rows(env["DATABASE_URL"])
        for name in ("web.log", "relay.log"):
            # /healthz answers 503 by design here (no Celery worker or beat): not news.
            log_tail = "\n".join(
                line for line in tail(workdir / name).splitlines() if "/healthz" not in line
            )
            if log_tail:
                print(f"\n  {name} (last lines):\n" + log_tail)
        last_line = report(
            results=results,
            verification=verification,
            args=args,
            rates=rates,
            info=info,
            database=database,
            server=server,
            relay_rows=relay_rows,
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; cleaning up", file=sys.stderr)
    except Exception:
        for name in ("web.log", "relay.log", "upstream.log"):
            text = tail(workdir / name)
            if text:
                print(f"--- {name} ---\n{text}", file=sys.stderr)
        raise
    finally:
        stop_process(web_proc)
        stop_process(relay_proc)
        stop_process(upstream_proc)
        logs.close()
        if django_ready:
            from django.db import connections

            connections.close_all()
        if postgres is not None:
            postgres.drop()
        if redis_proc is not None:
            from studyplatform.core.embedded_redis import stop_embedded_redis

            stop_embedded_redis(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)
    if last_line:
        print(last_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
