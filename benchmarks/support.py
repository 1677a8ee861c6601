"""What the benchmarks that run the platform share: a throwaway PostgreSQL database, Django
set-up in the benchmark's own process, and a description of the machine for the report."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import secrets
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


def production_env(workdir: Path, *, cache_prefix: str) -> dict[str, str]:
    """The settings a benchmark's platform processes run with: production settings
    (DEBUG=False, so Django keeps no query log) with throwaway keys, plain http on loopback
    (production's HTTPS redirect would answer every request 301), files under `workdir`, and
    an own cache namespace in case REDIS_URL points at a shared server."""
    from cryptography.fernet import Fernet

    return {
        "DJANGO_SETTINGS_MODULE": "studyplatform.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "VAR_DIR": str(workdir / "var"),
        "LOG_LEVEL": "WARNING",
        "CACHE_KEY_PREFIX": f"{cache_prefix}{os.getpid()}",
    }


def fake_upstream_command(port: int) -> list[str]:
    """The loopback fake model server (tests/support/fake_upstream.py, an ASGI app) under
    uvicorn on 127.0.0.1:`port`, one process, with uvloop + httptools when installed (as the
    platform runs), so that the model side costs the benchmark as little CPU as it can."""
    command = [sys.executable, "-m", "uvicorn", "tests.support.fake_upstream:create_app"]
    command += ["--factory", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log", "--no-proxy-headers"]
    if importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools"):
        command += ["--loop", "uvloop", "--http", "httptools"]
    return command


def migrate_and_setup(env: dict[str, str], label: str) -> None:
    """`manage.py migrate` on the benchmark's throwaway database (in a subprocess, with `env`),
    then Django set up in this process; RuntimeError with the command's output tail if it fails."""
    print(f"set-up: migrating ({label}) ...", flush=True)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
    )
    if migrate.returncode != 0:
        print(migrate.stdout[-3000:], migrate.stderr[-3000:], file=sys.stderr)
        raise RuntimeError("manage.py migrate failed")
    django_setup()


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


def recruiting_study(
    *, slug: str, endpoint: str, model: str, username: str, target_enrollment: int | None = None
):
    """The companion-rct example as a recruiting study whose arms all use `endpoint`/`model`,
    owned by a new verified researcher `username`; returns (study, researcher).

    The limits are the protocol schema's maxima (a protocol cannot ask for more), far above
    what a benchmark sends. The launch checklist needs a recent model test per arm; this
    synthetic study records one (the benchmarks measure the platform, not the launch)."""
    import yaml
    from django.contrib.auth import get_user_model

    from studyplatform.accounts.services import email_mark_verified
    from studyplatform.studies.launch import model_check_record
    from studyplatform.studies.services import study_create_from_protocol, study_transition

    root = Path(__file__).resolve().parent.parent
    doc = yaml.safe_load((root / "examples" / "companion-rct.yaml").read_text())
    doc["study"]["slug"] = slug
    if target_enrollment is not None:
        doc["study"]["target_enrollment"] = target_enrollment
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": endpoint, "name": model}
    doc.setdefault("limits", {}).update(messages_per_minute=1000, tokens_per_day=100_000_000)
    researcher = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.org", password=None
    )
    email_mark_verified(user=researcher, method="command", actor=None)
    study = study_create_from_protocol(doc=doc, author=researcher)
    study = study_transition(study=study, to="piloting", actor=researcher)
    for arm in study.arms.all():
        model_check_record(study=study, arm=arm, ok=True, error="", actor=researcher)
    study = study_transition(study=study, to="recruiting", actor=researcher)
    return study, researcher
