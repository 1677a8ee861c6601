"""pytest plugin (loaded with `-p` before pytest-django reads settings): development settings
and real Redis in every run.

DEBUG defaults to false (production) in settings, so the tests set DEBUG=true for themselves
unless the caller chose a value: the settings derived from it at import (development keys, no
HTTPS redirect, no HSTS, cookies over http, static files served by the app) are the ones the
test client and the live servers speak plain http to. pytest-django still runs each test with
settings.DEBUG=False, as Django's test runner does.

When REDIS_URL is not set, an embedded redis-server is started for the whole test session.
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    from studyplatform.core.embedded_redis import ensure_redis_url

    os.environ.setdefault("DEBUG", "true")
    ensure_redis_url()
