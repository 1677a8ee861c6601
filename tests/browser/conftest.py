"""Playwright driving Debian's Chromium (headless) against the live test server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # assertions wait as long as a slow shared CI box needs

    # Playwright's sync API runs an event loop in this thread while it is open, so Django must
    # allow ORM calls here; module scope closes the loop before other tests use asyncio.run.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page_factory(browser):
    """New pages; any Content-Security-Policy violation a page reports (a blocked inline script,
    handler or style) fails the test, so every journey also proves the pages work under the CSP."""
    contexts = []
    violations: list[str] = []

    def record(message) -> None:
        if "Content Security Policy" in message.text:
            violations.append(f"{message.location.get('url', '')}: {message.text}")

    def make(locale: str = "en-US", **kwargs):
        context = browser.new_context(
            locale=locale,
            extra_http_headers={
                "Accept-Language": "pt-BR,pt;q=0.9" if locale.startswith("pt") else "en-US,en;q=0.9"
            },
            **kwargs,
        )
        # CI machines are small and shared: allow slow steps rather than flake.
        context.set_default_timeout(60_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", record)
        return page

    yield make
    for context in contexts:
        context.close()
    assert violations == [], "\n".join(violations)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def asgi_server(transactional_db, settings):
    """The real ASGI app under uvicorn in a background thread (chat replies stream over SSE,
    which the WSGI live server cannot do). Uses the test database; data must be committed."""
    import socket
    import threading
    import time

    import uvicorn
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from studyplatform.core.sse import get_asgi_application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = ASGIStaticFilesHandler(get_asgi_application())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    settings.SITE_URL = url
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def eventually(query, *, timeout_s: float = 10.0):
    """``query()``'s first truthy result within ``timeout_s`` (else its last result): for what
    the page's own requests write to the database after what the test waited for on screen."""
    import time

    from django.db import OperationalError

    def attempt():
        try:
            return query()
        except OperationalError as exc:
            # SQLite's shared cache answers "table is locked" at once (no busy wait) while the
            # server's thread holds a write lock on it; that is "not yet", not a failure.
            if "is locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            return None

    deadline = time.monotonic() + timeout_s
    while not (found := attempt()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found
