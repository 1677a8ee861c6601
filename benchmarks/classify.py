"""Benchmark classification runs: judge throughput with a slow judge, and the cost of a re-run.

    .venv/bin/python benchmarks/classify.py [--participants 20] [--messages-each 20]
        [--classifiers 4] [--latency-ms 200] [--concurrency 16] [--database-url postgres://...]

Set-up: a throwaway database (a temporary SQLite file, or with --database-url a throwaway
PostgreSQL database), migrated in a subprocess; a launched study whose protocol runs the first
N shipped user-message classifiers, judged by the loopback fake upstream (a separate process,
registered as the operator registers a local vLLM server). Participants consent and write their
messages through the real chat services; every message carries the fake upstream's directives
``[[ttft_ms: <latency>]] [[reply: no]]``, so each judge call takes the given latency and answers
with a valid code.

Measured: one classification run over everything, executed in this process exactly as the
Celery task executes it (claim the lease, execute), timed from claim to finish on the wall
clock; then the same run again, which must make no judge call. msgs_per_s is labelled
(message x classifier) units per second of the first run.

The last two lines are machine-readable, one per run:
first: messages=<n> classifiers=<n> judge_calls=<n> msgs_per_s=<x> cache_hit_calls=<n>
rerun: messages=<n> classifiers=<n> judge_calls=<n> msgs_per_s=<x> cache_hit_calls=<n>
Targets: first msgs_per_s >= 50 at latency 200 ms and concurrency 16; rerun judge_calls = 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.support import (  # noqa: E402
    Postgres,
    fake_upstream_command,
    machine_info,
    migrate_and_setup,
)

ENDPOINT = "bench-judge"
MODEL = "bench-judge-model"
USER_MESSAGE_CLASSIFIERS = [
    "loneliness@1",
    "support_seeking@1",
    "anthropomorphism@1",
    "affection_user@1",
]
POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the fake upstream exited with code {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fake upstream did not answer at {url}")
        time.sleep(0.1)


def seed(*, participants: int, messages_each: int, classifiers: int, latency_ms: int):
    """A launched study with classifiers, and consenting participants' messages."""
    import yaml
    from django.contrib.auth import get_user_model

    from studyplatform.accounts.services import email_mark_verified
    from studyplatform.chat.services import conversation_create, message_send
    from studyplatform.participants.services import JoinContext, participant_enroll
    from studyplatform.studies.launch import model_check_record
    from studyplatform.studies.services import study_create_from_protocol, study_transition

    doc = yaml.safe_load((ROOT / "examples" / "companion-rct.yaml").read_text())
    doc["study"]["slug"] = "bench-classify"
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": ENDPOINT, "name": MODEL}
    doc.setdefault("limits", {}).update(messages_per_minute=1000, tokens_per_day=100_000_000)
    for document in doc["consent"]["documents"]:
        document["checkboxes"].append(
            {
                "key": "classify_chats",
                "label": "Chats may be labelled by a model.",
                "required": False,
            }
        )
    doc["classifiers"] = {
        "send_to_judge": True,
        "consent_checkbox": "classify_chats",
        "text": "raw",
        "judge": {"endpoint": ENDPOINT, "model": MODEL},
        "run": USER_MESSAGE_CLASSIFIERS[:classifiers],
    }
    researcher = get_user_model().objects.create_user(
        username="bench", email="bench@example.org", password=None
    )
    email_mark_verified(user=researcher, method="command", actor=None)
    study = study_create_from_protocol(doc=doc, author=researcher)
    study = study_transition(study=study, to="piloting", actor=researcher)
    for arm in study.arms.all():
        model_check_record(study=study, arm=arm, ok=True, error="", actor=researcher)
    study = study_transition(study=study, to="recruiting", actor=researcher)
    choices = {"agree": True, "adult": True, "share_chats": True, "classify_chats": True}
    for i in range(participants):
        person = participant_enroll(
            study=study,
            answers={"age": 30, "uses_chatbots": True, "gender": "woman"},
            language="en",
            timezone_name="America/Sao_Paulo",
            choices=choices,
            signature_name=f"Person {i}",
            email=f"person{i}@example.org",
            join=JoinContext(),
        )
        conversation = conversation_create(participant=person)
        for j in range(messages_each):
            message_send(
                participant=person,
                conversation=conversation,
                text=f"message {j} of person {i} [[ttft_ms: {latency_ms}]] [[reply: no]]",
            )
    return study, researcher


def timed_run(study, researcher, *, concurrency: int):
    from studyplatform.classifiers.models import ClassificationRun
    from studyplatform.classifiers.services import classification_run_create
    from studyplatform.classifiers.tasks import classification_run_task

    run = classification_run_create(
        study=study,
        created_by=researcher,
        data={"max_judge_calls": 1_000_000, "concurrency": concurrency, "include_pilot": True},
        enqueue=False,
    )
    started, cpu = time.perf_counter(), time.process_time()
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        cProfile.runctx(
            "classification_run_task(run.pk)", globals(), locals(), os.environ["BENCH_PROFILE"]
        )
    else:
        classification_run_task(run.pk)  # the task body, in this process: claim, execute, finish
    elapsed = time.perf_counter() - started
    print(
        f"  run {run.pk}: {elapsed:.2f} s wall, {time.process_time() - cpu:.2f} s CPU", flush=True
    )
    run = ClassificationRun.objects.get(pk=run.pk)
    if run.status != ClassificationRun.Status.DONE:
        raise RuntimeError(f"run {run.pk} ended {run.status}: {run.error or run.stop_reason}")
    return run, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--messages-each", type=int, default=20)
    parser.add_argument("--classifiers", type=int, default=4, choices=range(1, 5))
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    if not args.database_url and os.environ.get("DATABASE_URL", "").startswith(POSTGRES_SCHEMES):
        args.database_url = os.environ["DATABASE_URL"]

    workdir = Path(tempfile.mkdtemp(prefix="bench-classify-"))
    upstream = redis_proc = None
    postgres: Postgres | None = None
    try:
        env = {
            k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
        }
        if not env.get("REDIS_URL"):
            from studyplatform.core.embedded_redis import start_embedded_redis

            env["REDIS_URL"], redis_proc = start_embedded_redis()
        if args.database_url:
            postgres = Postgres(args.database_url, "studyplatform_bench_classify")
            env["DATABASE_URL"] = postgres.url
            database = f"postgresql {postgres.server_version} (throwaway {postgres.name})"
        else:
            import sqlite3

            env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
            database = f"sqlite {sqlite3.sqlite_version} (temporary file, WAL)"
        port = free_port()
        env.update(
            DJANGO_SETTINGS_MODULE="studyplatform.settings",
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(48),
            FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            VAR_DIR=str(workdir / "var"),
            LOG_LEVEL="WARNING",
            CACHE_KEY_PREFIX=f"benchcls{os.getpid()}",
            MODEL_ENDPOINTS=json.dumps(
                {
                    ENDPOINT: {
                        "kind": "openai",
                        "base_url": f"http://127.0.0.1:{port}/v1",
                        "requires_api_key": False,
                        "models": [MODEL],
                    }
                }
            ),
        )
        os.environ.update(env)
        for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            os.environ.pop(key, None)
        # The judge: the fake upstream in its own process (as chat_proxy.py runs it).
        upstream = subprocess.Popen(
            fake_upstream_command(port),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_up(f"http://127.0.0.1:{port}/v1/models", upstream)
        try:
            migrate_and_setup(env, f"{database}")
        except RuntimeError:
            return 2
        messages = args.participants * args.messages_each
        print(
            f"set-up: {args.participants} participants x {args.messages_each} messages", flush=True
        )
        study, researcher = seed(
            participants=args.participants,
            messages_each=args.messages_each,
            classifiers=args.classifiers,
            latency_ms=args.latency_ms,
        )
        info = machine_info()
        print(
            f"machine: {info['nproc']} cores, {info['cpu']}, load {info['load']}; {database}; "
            f"judge latency {args.latency_ms} ms; concurrency {args.concurrency}",
            flush=True,
        )
        first, first_s = timed_run(study, researcher, concurrency=args.concurrency)
        rerun, rerun_s = timed_run(study, researcher, concurrency=args.concurrency)
        lines = []
        for name, run, seconds in (("first", first, first_s), ("rerun", rerun, rerun_s)):
            rate = run.units_done / seconds if seconds else 0.0
            print(
                f"{name}: {run.units_done} units in {seconds:.2f} s; "
                f"{run.prompt_tokens + run.completion_tokens} tokens",
                flush=True,
            )
            lines.append(
                f"{name}: messages={messages} classifiers={args.classifiers} "
                f"judge_calls={run.judge_calls} msgs_per_s={rate:.1f} "
                f"cache_hit_calls={run.cache_hits}"
            )
        print("\n".join(lines))
        return 0
    finally:
        if upstream is not None:
            upstream.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                upstream.wait(timeout=10)
        if redis_proc is not None:
            from studyplatform.core.embedded_redis import stop_embedded_redis

            stop_embedded_redis(redis_proc)
        if postgres is not None:
            from django.db import connections

            connections.close_all()
            postgres.drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
