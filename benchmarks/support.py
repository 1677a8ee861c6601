"""What the benchmarks that run the platform share: a throwaway PostgreSQL database, Django
set-up in the benchmark's own process, and a description of the machine for the report."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class Postgres:
    """A throwaway database ``<prefix>_<pid>`` on the server named by `admin_url` (its own
    database is only used to connect): created now, dropped in drop()."""

    def __init__(self, admin_url: str, prefix: str) -> None:
        import psycopg

        self.admin_url = admin_url
        self.name = f"{prefix}_{os.getpid()}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
            conn.execute(f'CREATE DATABASE "{self.name}"')
            self.server_version = conn.execute("SHOW server_version").fetchone()[0]
        parts = urlsplit(admin_url)
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))

    def drop(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except psycopg.Error as exc:
            print(f"WARNING: could not drop the database {self.name}: {exc}", file=sys.stderr)


def django_setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyplatform.settings")
    django.setup()


def machine_info() -> dict[str, str]:
    """Cores (nproc), CPU model and load average, for the report's header."""
    try:
        cores = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        cores = str(os.cpu_count())
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"nproc": cores.strip(), "cpu": model, "load": load}
