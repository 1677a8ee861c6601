"""Where the web process's CPU goes for one chat message: the chat page's send-and-stream
request (POST /p/chat/c/<id>/reply/) driven in this process through the ASGI application,
with the same throwaway set-up as benchmarks/chat_proxy.py.

    .venv/bin/python benchmarks/chat_profile.py [--messages 60] [--concurrency 6]
        [--tokens 40] [--delay-ms 20] [--top 40] [--database-url postgresql://...]

Two passes over the same kind of load: the first measures CPU per message (time.process_time
of this whole process, every thread, over the pass / messages), the second runs under cProfile
in the event loop's thread and in every thread asgiref's sync_to_async uses (its
thread_handler is wrapped), and prints the merged profile sorted by own time and cumulative
time, plus the CPU per message grouped by phase. No HTTP server is involved, so uvicorn's own
parsing and socket writes are not in these figures (chat_proxy.py measures the whole server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.chat_proxy import (  # noqa: E402
    BENCH_ENDPOINT,
    MODEL_NAME,
    free_port,
    prompt,
    seed,
    start,
    stop_process,
    wait_http,
)
from benchmarks.support import (  # noqa: E402
    Postgres,
    fake_upstream_command,
    migrate_and_setup,
    production_env,
)


async def call(app, who, text: str) -> bytes:
    """One ASGI request of the chat page's send; returns the response body."""
    body = json.dumps({"text": text, "client_request_id": uuid.uuid4().hex}).encode()
    return await asgi_request(app, who, "POST", f"/p/chat/c/{who.conversation_id}/reply/", body)


async def open_chat_pages(app, people) -> None:
    """Each participant opens their chat page once, as a person does before the first message
    (and as benchmarks/chat_proxy.py does): the first visit's session and consent check is not
    what a send costs."""
    for who in people:
        page = await asgi_request(app, who, "GET", f"/p/chat/c/{who.conversation_id}/", b"")
        if page.startswith(b"status "):
            raise RuntimeError(f"chat page of participant {who.participant_id}: {page[:40]!r}")


async def asgi_request(app, who, method: str, path: str, body: bytes) -> bytes:
    """One ASGI request as `who` (session cookie, CSRF header); the response body, or
    b"status N" first when the status is not 200."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cookie", who.cookie.encode()),
            (b"x-csrftoken", who.csrf.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    done = asyncio.Event()
    out: list[bytes] = []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            if message["status"] != 200:
                out.append(f"status {message['status']}".encode())
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return b"".join(out)


async def run_pass(app, people, messages: int, concurrency: int, tokens: int, delay_ms: int):
    queue = list(range(messages))
    errors = 0

    async def worker(slot: int):
        nonlocal errors
        while queue:
            i = queue.pop()
            # Spread over all participants, so conversations grow slowly across passes.
            who = people[(i + slot) % len(people)]
            reply = await call(app, who, prompt(tokens, delay_ms, i))
            if b"event: done" not in reply or b'"status": "complete"' not in reply:
                errors += 1
                if errors < 3:
                    print("bad reply:", reply[-400:], file=sys.stderr)

    await asyncio.gather(*(worker(s) for s in range(concurrency)))
    return errors


class ThreadProfiles:
    """cProfile in every thread that runs sync_to_async work, merged at the end."""

    def __init__(self):
        self.profiles: dict[int, cProfile.Profile] = {}
        self.lock = threading.Lock()

    def install(self):
        from asgiref.sync import SyncToAsync

        original = SyncToAsync.thread_handler
        profiles = self

        def thread_handler(self_, loop, exc_info, task_context, func, *args, **kwargs):
            ident = threading.get_ident()
            with profiles.lock:
                prof = profiles.profiles.setdefault(ident, cProfile.Profile(time.thread_time))
            prof.enable()
            try:
                return original(self_, loop, exc_info, task_context, func, *args, **kwargs)
            finally:
                prof.disable()

        SyncToAsync.thread_handler = thread_handler
        return original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--passes", type=int, default=1, help="unprofiled passes (median shown)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled pass")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sp-chat-profile-"))
    logs = contextlib.ExitStack()
    redis_proc = upstream_proc = None
    postgres = None
    try:
        env = dict(os.environ)
        from studyplatform.core.embedded_redis import start_embedded_redis, stop_embedded_redis

        env["REDIS_URL"], redis_proc = start_embedded_redis()
        if args.database_url:
            postgres = Postgres(args.database_url, "studyplatform_profile")
            env["DATABASE_URL"] = postgres.url
        else:
            env["DATABASE_URL"] = f"sqlite:///{workdir / 'profile.sqlite3'}"
        env.update(production_env(workdir, cache_prefix="prof"))
        os.environ.update(env)
        port = free_port()
        upstream_proc = start(fake_upstream_command(port), env, workdir / "upstream.log", logs)
        upstream_url = f"http://127.0.0.1:{port}/v1"
        wait_http(f"{upstream_url}/models", upstream_proc, "fake upstream")
        env["MODEL_ENDPOINTS"] = os.environ["MODEL_ENDPOINTS"] = json.dumps(
            {
                BENCH_ENDPOINT: {
                    "kind": "openai",
                    "base_url": upstream_url,
                    "requires_api_key": False,
                    "models": [MODEL_NAME],
                }
            }
        )
        migrate_and_setup(env, "profile")
        people = seed(participants=max(args.concurrency, 40))
        from django.db import connections

        connections.close_all()
        import uvloop

        from studyplatform.asgi import application

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(open_chat_pages(application, people))
            # Warm-up: imports, first connections, template and translation caches.
            runner.run(
                run_pass(
                    application,
                    people,
                    args.concurrency * 2,
                    args.concurrency,
                    args.tokens,
                    args.delay_ms,
                )
            )
            figures = []
            for _ in range(args.passes):
                c0 = time.process_time()
                w0 = time.perf_counter()
                errors = runner.run(
                    run_pass(
                        application,
                        people,
                        args.messages,
                        args.concurrency,
                        args.tokens,
                        args.delay_ms,
                    )
                )
                figures.append((time.process_time() - c0) * 1000 / args.messages)
                print(
                    f"pass: messages={args.messages} errors={errors} "
                    f"cpu_ms_per_msg={figures[-1]:.2f} wall_s={time.perf_counter() - w0:.1f}"
                )
            figures.sort()
            print(
                f"plain: passes={args.passes} "
                f"cpu_ms_per_msg median={figures[len(figures) // 2]:.2f} min={figures[0]:.2f}"
            )
            if args.no_profile:
                return 0
            threads = ThreadProfiles()
            threads.install()
            main_prof = cProfile.Profile(time.thread_time)
            main_prof.enable()
            errors = runner.run(
                run_pass(
                    application, people, args.messages, args.concurrency, args.tokens, args.delay_ms
                )
            )
            main_prof.disable()
        stats = pstats.Stats(main_prof)
        for prof in threads.profiles.values():
            stats.add(prof)
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            stats.stream = buf
            stats.sort_stats(key).print_stats(args.top)
            text = buf.getvalue()
            print(f"\n===== by {key} (profiled pass, {args.messages} messages) =====")
            print(text[text.find("ncalls") - 10 :] if "ncalls" in text else text)
        stats.dump_stats(str(Path(tempfile.gettempdir()) / "chat_profile.pstats"))
        print("profile dumped to", Path(tempfile.gettempdir()) / "chat_profile.pstats")
    finally:
        stop_process(upstream_proc)
        logs.close()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if postgres is not None:
            postgres.drop()
        if redis_proc is not None:
            stop_embedded_redis(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
