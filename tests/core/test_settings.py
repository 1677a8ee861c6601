"""Production settings refuse to start without real secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def start_django(**env_overrides) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DEBUG")
    }
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "studyplatform.settings"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_debug_false_without_secrets_refuses_to_start():
    result = start_django(DEBUG="False")
    assert result.returncode != 0
    assert "Refusing to start with DEBUG=False: SECRET_KEY must be set" in result.stderr
    assert "FIELD_ENCRYPTION_KEY must be set to a Fernet key" in result.stderr


def test_debug_false_with_a_short_secret_key_refuses_to_start():
    result = start_django(
        DEBUG="False", SECRET_KEY="short", FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode()
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set to a random string of at least 32 characters" in result.stderr
    assert "FIELD_ENCRYPTION_KEY" not in result.stderr.split("Refusing")[-1]


def test_debug_false_with_real_secrets_starts():
    result = start_django(
        DEBUG="False", SECRET_KEY="x" * 50, FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"


def test_booleans_are_parsed_strictly():
    result = start_django(DEBUG="Flase")
    assert result.returncode != 0
    assert "DEBUG must be true or false (got 'flase')." in result.stderr


def database_settings(**env) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "d = s.DATABASES['default']; "
            "o = d.get('OPTIONS', {}); "
            "print(d['CONN_MAX_AGE'], o.get('prepare_threshold'), "
            "repr(o['options']) if 'options' in o else '')",
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("CONN_MAX_AGE", "DATABASE_URL")},
            "DJANGO_SETTINGS_MODULE": "studyplatform.settings",
            "DEBUG": "true",
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_sqlite_keeps_a_threads_connection_between_requests_by_default(tmp_path):
    # the request threads are kept (core/sse.py), and with them their SQLite connections
    assert database_settings(VAR_DIR=str(tmp_path)) == "300 None"
    assert database_settings(VAR_DIR=str(tmp_path), CONN_MAX_AGE="0") == "0 None"


def test_postgresql_pools_its_connections_and_prepares_the_chat_statements():
    url = "postgres://u:p@127.0.0.1:5432/db"
    generic = "'-c plan_cache_mode=force_generic_plan'"
    assert database_settings(DATABASE_URL=url) == f"0 0 {generic}"
    assert database_settings(DATABASE_URL=url, DB_PREPARED_STATEMENTS="false") == "0 None"


def test_prepared_statements_are_planned_generically_unless_switched_off():
    # the URL's own startup options are kept, and one naming plan_cache_mode wins
    url = "postgres://u:p@127.0.0.1:5432/db"
    assert database_settings(DATABASE_URL=url, DB_GENERIC_PLANS="false") == "0 0"
    search_path = url + "?options=-c%20search_path%3Dstudy"
    assert database_settings(DATABASE_URL=search_path) == (
        "0 0 '-c search_path=study -c plan_cache_mode=force_generic_plan'"
    )
    chosen = url + "?options=-c%20plan_cache_mode%3Dauto"
    assert database_settings(DATABASE_URL=chosen) == "0 0 '-c plan_cache_mode=auto'"
