"""pytest plugin (loaded with `-p` before pytest-django reads settings): real Redis in every run.

When REDIS_URL is not set, an embedded redis-server is started for the whole test session.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    from studyplatform.core.embedded_redis import ensure_redis_url

    ensure_redis_url()
