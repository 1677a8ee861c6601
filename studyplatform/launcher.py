"""`make run`: migrate, seed the demo, then run Redis (embedded unless REDIS_URL is set), a Celery
worker, Celery beat and the ASGI web server in the foreground. Ctrl-C stops every process it
started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run_checked(args: list[str]) -> None:
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)  # noqa: S603


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyplatform.settings")
    # `make run` is the development server: settings default to production (DEBUG unset means
    # false), so it asks for development for itself and every process it starts, unless the
    # user chose (DEBUG=false make run with real keys tries the production settings locally).
    os.environ.setdefault("DEBUG", "true")
    from studyplatform.core.embedded_redis import start_embedded_redis, stop_embedded_redis

    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    os.environ.setdefault("SITE_URL", f"http://{host}:{port}")

    # SIGTERM (a service manager, `timeout`) stops everything the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    redis_proc = None
    if not os.environ.get("REDIS_URL"):
        # Persistent (append-only file in var/redis): tasks queued before a stop run after.
        url, redis_proc = start_embedded_redis(data_dir=ROOT / "var" / "redis")
        os.environ["REDIS_URL"] = url
        print(f"embedded Redis: {url}", flush=True)

    children: list[subprocess.Popen] = []
    try:
        _run_checked(["manage.py", "migrate", "--noinput"])
        _run_checked(["manage.py", "seed_demo"])
        var = ROOT / "var"
        var.mkdir(exist_ok=True)
        celery = [sys.executable, "-m", "celery", "-A", "studyplatform"]
        commands = {
            "worker": [
                *celery,
                "worker",
                "-Q",
                "default,chat,analysis,exports",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
            ],
            "beat": [
                *celery,
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(var / "celerybeat-schedule"),
            ],
            "web": [
                sys.executable,
                "-m",
                "uvicorn",
                "studyplatform.asgi:application",
                "--host",
                host,
                "--port",
                port,
                "--log-level",
                "info",
                # Client addresses come from studyplatform.core.client_ip (TRUSTED_PROXIES);
                # uvicorn must not rewrite them from a header any local client can send.
                "--no-proxy-headers",
                # Access log without query strings or link secrets (panel ids, return links).
                "--log-config",
                str(ROOT / "studyplatform" / "uvicorn_logging.json"),
            ],
        }
        for name, cmd in commands.items():
            # Own process group so a Ctrl-C reaches us once and we stop children in order.
            children.append(
                subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)  # noqa: S603
            )
            print(f"started {name} (pid {children[-1].pid})", flush=True)
        user = os.environ.get("DEMO_USERNAME", "researcher")
        password = os.environ.get("DEMO_PASSWORD", "demo-researcher")
        base = f"http://{host}:{port}"
        print(
            "\nStudy Platform is running.\n"
            f"  Home and API docs:   {base}/   {base}/api/docs/\n"
            f"  Join the demo study: {base}/s/demo/   (sign-in emails print in this console)\n"
            f"  Researcher console:  {base}/console/   user {user!r}  password {password!r}\n"
            f"  Administration:      {base}/admin/   (the same login)\n"
            f"  Health:              {base}/healthz\n"
            "Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("a process exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"set-up step failed: {' '.join(map(str, exc.cmd))}", file=sys.stderr)
        return 1
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_proc is not None:
            stop_embedded_redis(redis_proc)


if __name__ == "__main__":
    sys.exit(main())
