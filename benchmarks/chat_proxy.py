"""Benchmark the chat proxy: what the platform adds on top of the model server, per stream.

    .venv/bin/python benchmarks/chat_proxy.py [--streams 50] [--tokens 40] [--delay-ms 20]
        [--rounds 3] [--load burst|sustained] [--duration 10] [--workers 1]
        [--database-url postgresql://user:pw@127.0.0.1:5432/postgres]

Set-up (all throwaway, removed at the end even on failure or Ctrl-C): an embedded Redis (unless
REDIS_URL is set), the fake upstream (studyplatform.chat.fake_upstream) in its own process on a
free port, and a database: with --database-url (or DATABASE_URL) a PostgreSQL server on which a
fresh database ``studyplatform_bench_<pid>`` is created and later dropped (the URL's own database
is only used to connect); otherwise a temporary SQLite file (WAL, as in settings). ``manage.py
migrate`` runs in a subprocess, then this process seeds through the real services: a study from
examples/companion-rct.yaml (slug "bench") whose arms point at the fake upstream, with
rate/token limits raised out of the way, moved to recruiting; N participants enrolled, one
conversation each, and a database session plus a CSRF token per participant. The platform runs
with production settings (DEBUG=False, throwaway keys) as ``uvicorn studyplatform.asgi:application
--workers W`` (uvloop + httptools when installed).

Measurement, from this process with httpx.AsyncClient, N streams at once, after one unmeasured
warm-up round of each kind (imports, connection pools), then R rounds of each kind alternating
direct, platform, direct, platform, ... so both share the machine's noise:

- direct: POST {upstream}/v1/chat/completions, stream=true with include_usage, message
  ``[[tokens: T]] [[delay_ms: D]] hello <i>``. TTFT = request start to the first chunk with
  content; e2e = request start to ``data: [DONE]``.
- platform: what the chat page does: POST /p/chat/c/<id>/reply/ (JSON text + unique
  client_request_id, session cookie, CSRF cookie + X-CSRFToken header), whose response is the
  SSE stream (`message`, `start`, `delta`..., `done`). TTFT = start of the POST to the first
  ``event: delta`` frame; e2e = to ``event: done``. Errors: non-2xx, an ``event: error`` frame,
  no done frame, or a timeout.

Load (--load): ``burst`` (default) sends the N requests of a round in the same instant
(asyncio.gather), the harshest case; ``sustained`` runs N conversations for --duration seconds,
each sending its next message as soon as its previous reply is done (closed loop, starts spread
over one reply's duration; only requests started after that ramp-up are measured), the way load
generators such as locust measure a proxy.

Figures: added TTFT of a platform request = its TTFT - the median direct TTFT of the same round
(p50 and p95 over all platform requests); e2e ratio = median platform e2e / median direct e2e
(over all rounds); streams/s = platform streams / platform wall time. Afterwards the database
is checked (ORM, this process): every platform request must have exactly one user message and
one assistant reply (child of it) with status complete and non-empty content; ``lost`` counts
requests for which that does not hold. The breakdown rows (response headers = message stored,
start frame) and the server-side timestamps stored on the reply show where the added time goes;
CPU per stream is each process's user+system time (/proc/<pid>/stat; uvicorn with its worker
processes) over the measured rounds divided by their streams (uvicorn, fake upstream, this
client). PostgreSQL's own server processes are not included.

Targets: added TTFT p50 <= 10 ms, p95 <= 30 ms, e2e ratio <= 1.05, zero errors, zero lost. The
script exits 0 either way. The last line is machine-readable:
added_ttft_p50_ms=<x> added_ttft_p95_ms=<x> e2e_ratio=<x> streams=<n> errors=<n> lost=<n>
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
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.support import (  # noqa: E402
    Postgres,
    django_setup,
    machine_info,
    recruiting_study,
)

TARGETS = {"added_p50_ms": 10.0, "added_p95_ms": 30.0, "e2e_ratio": 1.05}
MODEL_NAME = "bench-model"
BENCH_ENDPOINT = "bench-upstream"
STUDY_SLUG = "bench"
POSTGRES_SCHEMES = ("postgres://", "postgresql://")


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
    url: str, proc: subprocess.Popen, what: str, timeout_s: float = 60.0, accept=None
) -> None:
    """Poll `url` until it answers 200 (or `accept(response)` is true); fail early if `proc`
    dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before answering")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200 or (accept is not None and accept(response)):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer 200 at {url} within {timeout_s:g} s")
        time.sleep(0.1)


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
    from django.contrib.sessions.backends.db import SessionStore
    from django.middleware.csrf import _get_new_csrf_string

    from studyplatform.chat.services import conversation_create
    from studyplatform.participants.services import JoinContext, participant_enroll
    from studyplatform.participants.session import SESSION_KEY

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
        session = SessionStore()
        session[SESSION_KEY] = participant.pk
        session.set_expiry(settings.PARTICIPANT_SESSION_AGE_S)
        session.create()
        seeded.append(
            Seeded(participant.pk, conversation.pk, session.session_key, _get_new_csrf_string())
        )
    return seeded


# -- measurement ---------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    round: int
    index: int
    ttft: float | None = None  # seconds from the request start
    e2e: float | None = None
    error: str = ""
    text: str = ""
    client_request_id: str = ""
    # platform only: milestones from the start of the send POST
    sent: float | None = None  # send POST answered
    headers: float | None = None  # stream GET response headers
    start: float | None = None  # `event: start` frame


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


def prompt(tokens: int, delay_ms: int, index: int) -> str:
    return f"[[tokens: {tokens}]] [[delay_ms: {delay_ms}]] hello {index}"


async def direct_one(client: httpx.AsyncClient, base_url: str, sample: Sample, text: str) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    parts: list[str] = []
    t0 = time.perf_counter()
    async with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
        if response.status_code != 200:
            sample.error = f"http_{response.status_code}"
            return
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                sample.e2e = time.perf_counter() - t0
                break
            for choice in json.loads(data).get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if sample.ttft is None:
                        sample.ttft = time.perf_counter() - t0
                    parts.append(content)
    sample.text = "".join(parts)
    if sample.e2e is None:
        sample.error = "no_done"


async def platform_one(
    client: httpx.AsyncClient, base_url: str, who: Seeded, sample: Sample, text: str
) -> None:
    parts: list[str] = []
    t0 = time.perf_counter()
    async with client.stream(
        "POST",
        f"{base_url}/p/chat/c/{who.conversation_id}/reply/",
        json={"text": text, "client_request_id": sample.client_request_id},
        headers={"Cookie": who.cookie, "X-CSRFToken": who.csrf},
    ) as stream:
        sample.headers = time.perf_counter() - t0
        if stream.status_code != 200:
            sample.error = f"http_{stream.status_code}"
            return
        event = ""
        data = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event:
                now = time.perf_counter() - t0
                if event == "delta":
                    if sample.ttft is None:
                        sample.ttft = now
                    parts.append(json.loads(data)["t"])
                elif event == "message":
                    sample.sent = now
                elif event == "start":
                    sample.start = now
                elif event == "done":
                    sample.e2e = now
                    if json.loads(data).get("status") != "complete":
                        sample.error = "done_not_complete"
                    break
                elif event == "error":
                    sample.error = "error_event:" + json.loads(data).get("code", "")
                    break
                event = data = ""
    sample.text = "".join(parts)
    if sample.e2e is None and not sample.error:
        sample.error = "no_done"


async def guarded(coro, sample: Sample, timeout_s: float) -> Sample:
    """Run one request; any failure is recorded on the sample, never raised."""
    try:
        await asyncio.wait_for(coro, timeout_s)
    except TimeoutError:
        sample.error = "timeout"
    except Exception as exc:  # a failed request is a counted error, not a crash
        sample.error = type(exc).__name__
    return sample


@dataclass
class Round:
    kind: str
    number: int  # 0 is the unmeasured warm-up
    wall: float
    samples: list[Sample]  # the measured requests (sustained load: after the ramp-up)
    cpu: dict[str, float]  # CPU seconds used during the round, per process (see measure)
    every: list[Sample]  # every request sent (all of them are checked in the database)


async def measure(
    *,
    upstream_url: str,
    platform_url: str,
    people: list[Seeded],
    tokens: int,
    delay_ms: int,
    rounds: int,
    load: str,
    duration_s: float,
    pids: dict[str, int],
) -> list[Round]:
    n = len(people)
    limits = httpx.Limits(max_connections=2 * n + 10, max_keepalive_connections=2 * n + 10)
    timeout = httpx.Timeout(60.0)
    # A stream should take tokens * delay; anything far beyond that is a stuck request.
    per_request_s = 30.0 + 4 * tokens * delay_ms / 1000
    reply_s = tokens * delay_ms / 1000
    results: list[Round] = []
    async with (
        httpx.AsyncClient(limits=limits, timeout=timeout) as direct_client,
        httpx.AsyncClient(limits=limits, timeout=timeout) as platform_client,
    ):

        def one(kind: str, sample: Sample, who: Seeded):
            text = prompt(tokens, delay_ms, sample.index)
            if kind == "direct":
                return direct_one(direct_client, upstream_url, sample, text)
            return platform_one(platform_client, platform_url, who, sample, text)

        def new_sample(kind: str, number: int, index: int) -> Sample:
            request_id = f"bench-{number}-{index}-{uuid.uuid4()}" if kind == "platform" else ""
            return Sample(kind, number, index, client_request_id=request_id)

        async def burst(kind: str, number: int) -> tuple[list[Sample], list[Sample]]:
            samples = [new_sample(kind, number, i) for i in range(n)]
            await asyncio.gather(
                *(
                    guarded(one(kind, s, who), s, per_request_s)
                    for s, who in zip(samples, people, strict=True)
                )
            )
            return samples, samples

        async def sustained(kind: str, number: int) -> tuple[list[Sample], list[Sample]]:
            # Closed loop: each of the N conversations sends its next message as soon as the
            # previous reply is done. Starts are spread over one reply's duration so the N
            # streams are in flight at once without all starting in the same millisecond;
            # only requests started after that ramp-up are measured.
            t0 = time.perf_counter()
            ramp_end = t0 + reply_s
            stop_at = ramp_end + (duration_s if number else min(duration_s, 2.0))
            every: list[Sample] = []
            measured: list[Sample] = []

            async def conversation(index: int, who: Seeded) -> None:
                await asyncio.sleep(index * reply_s / n)
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    sample = new_sample(kind, number, index)
                    every.append(sample)
                    await guarded(one(kind, sample, who), sample, per_request_s)
                    if started >= ramp_end:
                        measured.append(sample)

            await asyncio.gather(*(conversation(i, who) for i, who in enumerate(people)))
            return every, measured

        run = sustained if load == "sustained" else burst
        for number in range(rounds + 1):
            for kind in ("direct", "platform"):
                before = {name: cpu_seconds(pid, tree=name == "web") for name, pid in pids.items()}
                t0 = time.perf_counter()
                every, measured = await run(kind, number)
                wall = time.perf_counter() - t0
                cpu = {
                    name: cpu_seconds(pid, tree=name == "web") - before[name]
                    for name, pid in pids.items()
                }
                results.append(Round(kind, number, wall, measured, cpu, every))
            label = "warm-up" if number == 0 else f"round {number}/{rounds}"
            print(f"  {label} done", flush=True)
    return results


# -- verification and report ---------------------------------------------------------------------


@dataclass
class Verification:
    expected: int
    found: int
    content_mismatch: int
    server_upstream_ttft_ms: list[float]  # first_token_at - upstream_sent_at, per reply

    @property
    def lost(self) -> int:
        return self.expected - self.found


def verify(samples: list[Sample]) -> Verification:
    from studyplatform.chat.models import Message

    by_request = {s.client_request_id: s for s in samples}
    users: dict[str, list[dict]] = {}
    for row in Message.objects.filter(
        role=Message.Role.USER, client_request_id__in=list(by_request)
    ).values("id", "client_request_id"):
        users.setdefault(row["client_request_id"], []).append(row)
    user_ids = [rows[0]["id"] for rows in users.values() if len(rows) == 1]
    replies: dict[int, list[dict]] = {}
    for row in Message.objects.filter(role=Message.Role.ASSISTANT, parent_id__in=user_ids).values(
        "parent_id", "status", "content", "upstream_sent_at", "first_token_at"
    ):
        replies.setdefault(row["parent_id"], []).append(row)
    found = mismatch = 0
    upstream_ttft = []
    for request_id, sample in by_request.items():
        rows = users.get(request_id, [])
        if len(rows) != 1:
            continue
        answers = replies.get(rows[0]["id"], [])
        if len(answers) != 1:
            continue
        reply = answers[0]
        if reply["status"] != Message.Status.COMPLETE or not reply["content"]:
            continue
        found += 1
        if reply["content"] != sample.text:
            mismatch += 1
        if reply["first_token_at"] and reply["upstream_sent_at"]:
            delta = reply["first_token_at"] - reply["upstream_sent_at"]
            upstream_ttft.append(delta.total_seconds() * 1000)
    return Verification(len(by_request), found, mismatch, upstream_ttft)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def fmt(value: float, digits: int = 1) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def report(
    *,
    rounds: list[Round],
    verification: Verification,
    args: argparse.Namespace,
    info: dict[str, str],
    database: str,
    server: str,
) -> str:
    measured = [r for r in rounds if r.number > 0]
    direct_rounds = {r.number: r for r in measured if r.kind == "direct"}
    platform_rounds = [r for r in measured if r.kind == "platform"]
    print()
    print("Chat proxy benchmark")
    print(f"  machine   {info['nproc']} cores (nproc), {info['cpu']}, load avg {info['load']}")
    print(f"  python    {platform.python_version()}; platform: {server}")
    print(f"  database  {database}")
    print(
        f"  workload  {args.streams} concurrent streams, {args.load} load"
        + (
            f" ({args.duration:g} s per round after a ramp-up)"
            if args.load == "sustained"
            else " (all sent in the same instant)"
        )
        + f" x {args.rounds} rounds per kind (+1 warm-up), {args.tokens} tokens, "
        f"{args.delay_ms} ms between tokens"
    )
    print()
    header = (
        f"  {'round':<6}{'kind':<10}{'streams':>8}{'wall s':>8}{'ttft p50':>10}{'ttft p95':>10}"
        f"{'e2e p50':>10}{'e2e p95':>10}{'errors':>8}"
    )
    print(header + "   (ms)")
    for r in measured:
        ok = [s for s in r.samples if not s.error]
        ttft = ms([s.ttft for s in ok if s.ttft is not None])
        e2e = ms([s.e2e for s in ok if s.e2e is not None])
        errors = sum(1 for s in r.every if s.error)
        print(
            f"  {r.number:<6}{r.kind:<10}{len(r.every):>8}{r.wall:>8.2f}"
            f"{fmt(percentile(ttft, 0.5)):>10}{fmt(percentile(ttft, 0.95)):>10}"
            f"{fmt(percentile(e2e, 0.5)):>10}{fmt(percentile(e2e, 0.95)):>10}{errors:>8}"
        )

    added: list[float] = []
    platform_ok: list[Sample] = []
    for r in platform_rounds:
        direct = direct_rounds[r.number]
        direct_ttft = [s.ttft for s in direct.samples if s.ttft is not None and not s.error]
        base = statistics.median(direct_ttft) if direct_ttft else float("nan")
        for s in r.samples:
            if not s.error and s.ttft is not None:
                platform_ok.append(s)
                added.append((s.ttft - base) * 1000)
    direct_e2e = [s.e2e for r in direct_rounds.values() for s in r.samples if s.e2e and not s.error]
    platform_e2e = [s.e2e for s in platform_ok if s.e2e is not None]
    ratio = (
        statistics.median(platform_e2e) / statistics.median(direct_e2e)
        if platform_e2e and direct_e2e
        else float("nan")
    )
    streams = sum(len(r.every) for r in platform_rounds)
    wall = sum(r.wall for r in platform_rounds)
    errors = sum(1 for r in platform_rounds for s in r.every if s.error)
    direct_errors = sum(1 for r in direct_rounds.values() for s in r.every if s.error)
    error_kinds: dict[str, int] = {}
    for r in measured:
        for s in r.every:
            if s.error:
                key = f"{r.kind}:{s.error}"
                error_kinds[key] = error_kinds.get(key, 0) + 1

    def row(label: str, values: list[float]) -> None:
        print(f"    {label:<44}{fmt(percentile(values, 0.5)):>9}{fmt(percentile(values, 0.95)):>9}")

    print()
    print(f"  Platform milestones, ms from the start of the send POST{'p50':>12}{'p95':>9}")
    row("response headers (message stored)", ms([s.headers for s in platform_ok if s.headers]))
    row("`message` frame", ms([s.sent for s in platform_ok if s.sent is not None]))
    row("stream: `start` frame (request built)", ms([s.start for s in platform_ok if s.start]))
    row("stream: first `delta` frame (TTFT)", ms([s.ttft for s in platform_ok if s.ttft]))
    row(
        "first delta - start frame",
        ms([s.ttft - s.start for s in platform_ok if s.ttft and s.start]),
    )
    row(
        "server: first_token_at - upstream_sent_at",
        verification.server_upstream_ttft_ms,
    )
    row(
        "direct TTFT (all measured direct rounds)",
        ms([s.ttft for r in direct_rounds.values() for s in r.samples if s.ttft]),
    )

    print()
    print("  CPU per stream, ms (process CPU over the measured rounds / streams)")
    for kind in ("direct", "platform"):
        chosen = [r for r in measured if r.kind == kind]
        count = sum(len(r.every) for r in chosen)
        cpu = {name: sum(r.cpu[name] for r in chosen) * 1000 / count for name in chosen[0].cpu}
        busy = sum(r.cpu["web"] for r in chosen) / sum(r.wall for r in chosen)
        print(
            f"    {kind + ' rounds:':<17}uvicorn {fmt(cpu['web']):>6}   fake upstream "
            f"{fmt(cpu['upstream']):>5}   this client {fmt(cpu['client']):>5}"
            + (f"   (uvicorn busy {busy:.0%} of one core)" if kind == "platform" else "")
        )

    p50, p95 = percentile(added, 0.5), percentile(added, 0.95)
    lost = verification.lost

    def verdict(ok: bool) -> str:
        return "target met" if ok else "target missed"

    print()
    print(f"  added TTFT p50     {fmt(p50):>8} ms   (<= 10 ms)   {verdict(p50 <= 10)}")
    print(f"  added TTFT p95     {fmt(p95):>8} ms   (<= 30 ms)   {verdict(p95 <= 30)}")
    print(f"  e2e ratio          {fmt(ratio, 3):>8}      (<= 1.05)    {verdict(ratio <= 1.05)}")
    print(f"  platform errors    {errors:>8}      (0)          {verdict(errors == 0)}")
    print(f"  lost (not logged)  {lost:>8}      (0)          {verdict(lost == 0)}")
    print(f"  streams/s          {streams / wall if wall else float('nan'):>8.1f}")
    print(
        f"  logged check       {verification.found}/{verification.expected} requests (warm-up "
        f"included) with one user message + one complete reply; "
        f"{verification.content_mismatch} replies differ from the streamed text"
    )
    if direct_errors:
        print(f"  WARNING: {direct_errors} direct requests failed; the baseline is unreliable")
    if error_kinds:
        print("  errors by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(error_kinds.items())))
    return (
        f"added_ttft_p50_ms={fmt(p50)} added_ttft_p95_ms={fmt(p95)} e2e_ratio={fmt(ratio, 3)} "
        f"streams={streams} errors={errors} lost={lost}"
    )


# -- orchestration -------------------------------------------------------------------------------


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=50, help="concurrent streams (N)")
    parser.add_argument("--tokens", type=int, default=40, help="tokens per reply")
    parser.add_argument("--delay-ms", type=int, default=20, help="upstream delay between tokens")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per kind")
    parser.add_argument(
        "--load",
        choices=("burst", "sustained"),
        default="burst",
        help="sustained: N conversations each sending its next message when its reply ends; "
        "burst: N messages sent in the same instant, once per round",
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per sustained round (after ramp-up)"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL server to create a throwaway database on (default: DATABASE_URL if it "
        "is PostgreSQL, else a temporary SQLite file)",
    )
    args = parser.parse_args(argv)
    if not args.database_url and os.environ.get("DATABASE_URL", "").startswith(POSTGRES_SCHEMES):
        args.database_url = os.environ["DATABASE_URL"]
    signal.signal(signal.SIGTERM, _interrupt)

    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="sp-chat-bench-"))
    redis_proc = upstream_proc = web_proc = None
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
            if not args.database_url.startswith(POSTGRES_SCHEMES):
                parser.error("--database-url must be a PostgreSQL URL (omit it for SQLite)")
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
        env.update(
            DJANGO_SETTINGS_MODULE="studyplatform.settings",
            # Production settings: DEBUG=False (Django keeps no query log); throwaway keys.
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(48),
            FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            # Plain http on loopback: production's HTTPS redirect would answer every request 301.
            SECURE_SSL_REDIRECT="false",
            VAR_DIR=str(workdir / "var"),
            LOG_LEVEL="WARNING",
            # Own cache namespace, in case REDIS_URL points at a shared server.
            CACHE_KEY_PREFIX=f"bench{os.getpid()}",
        )
        # Django set up in this process (seeding, verification) must see the same settings.
        os.environ.update(env)
        for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            os.environ.pop(key, None)

        upstream_port = free_port()
        upstream_log = workdir / "upstream.log"
        upstream_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "studyplatform.chat.fake_upstream",
                "--port",
                str(upstream_port),
            ],
            cwd=ROOT,
            env=env,
            stdout=logs.enter_context(upstream_log.open("w")),
            stderr=subprocess.STDOUT,
            start_new_session=True,
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

        print(f"set-up: migrating ({database.split(' ')[0]}) ...", flush=True)
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if migrate.returncode != 0:
            print(migrate.stdout[-3000:], migrate.stderr[-3000:], file=sys.stderr)
            raise RuntimeError("manage.py migrate failed")
        django_setup()
        django_ready = True
        print(f"set-up: seeding {args.streams} participants ...", flush=True)
        people = seed(participants=args.streams)
        from django.db import connections

        connections.close_all()

        web_port = free_port()
        web_cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "studyplatform.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(web_port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ]
        server = f"uvicorn, {args.workers} worker{'s' if args.workers > 1 else ''}"
        if importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools"):
            web_cmd += ["--loop", "uvloop", "--http", "httptools"]
            server += ", uvloop + httptools"
        web_log = workdir / "web.log"
        web_proc = subprocess.Popen(
            web_cmd,
            cwd=ROOT,
            env=env,
            stdout=logs.enter_context(web_log.open("w")),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        platform_url = f"http://127.0.0.1:{web_port}"
        wait_http(f"{platform_url}/healthz", web_proc, "uvicorn", accept=_web_up)

        print("measuring ...", flush=True)
        rounds = asyncio.run(
            measure(
                upstream_url=upstream_url,
                platform_url=platform_url,
                people=people,
                tokens=args.tokens,
                delay_ms=args.delay_ms,
                rounds=args.rounds,
                load=args.load,
                duration_s=args.duration,
                pids={"web": web_proc.pid, "upstream": upstream_proc.pid, "client": os.getpid()},
            )
        )
        platform_samples = [s for r in rounds if r.kind == "platform" for s in r.every]
        verification = verify(platform_samples)
        log_tail = tail(web_log)
        if log_tail:
            print("\n  platform log (last lines):\n" + log_tail)
        last_line = report(
            rounds=rounds,
            verification=verification,
            args=args,
            info=info,
            database=database,
            server=server,
        )
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
    except Exception:
        for name in ("web.log", "upstream.log"):
            text = tail(workdir / name)
            if text:
                print(f"--- {name} ---\n{text}", file=sys.stderr)
        raise
    finally:
        stop_process(web_proc)
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
