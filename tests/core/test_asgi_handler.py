"""The ASGI application (core/sse.py): the synchronous middleware run in one thread hop, and an
event stream's database connection handed back before it streams (issue 19)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref import sync as asgiref_sync

from studyplatform.core import sse


def asgi_get(app, path: str) -> tuple[int, bytes]:
    """One GET through the ASGI application; returns the status and the body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages: list[dict] = []
    finished = asyncio.Event()
    received = []

    async def receive():
        if not received:
            received.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body


@pytest.fixture
def hops(monkeypatch):
    """Counts the trips from the event loop to a worker thread (asgiref's SyncToAsync calls)."""
    calls: list[str] = []
    original = asgiref_sync.SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        calls.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(asgiref_sync.SyncToAsync, "__call__", counting)
    return calls


def test_the_middleware_chain_is_entered_in_one_thread_hop(hops):
    # given: the application studyplatform.asgi serves (no database needed for a 404)
    app = sse.ASGIHandler()
    # when: a request passes every middleware on its way in and out
    status, _ = asgi_get(app, "/no-such-page-anywhere/")
    # then: the middleware and the view ran inside one hop; the others are Django's request
    # signals and log line around it (Django's own handler makes ~20 hops here, two for each
    # middleware with process_request and process_response)
    assert status == 404
    chain_hops = [name for name in hops if "run_chain" in name]
    assert chain_hops == ["ASGIHandler.load_middleware.<locals>.run_chain"]
    assert len(hops) <= 4, hops


def test_the_middleware_and_a_sync_view_share_the_requests_thread(monkeypatch):
    # given: a view and a middleware that note the thread they run in
    seen: dict[str, int] = {}
    from django.contrib.sessions.middleware import SessionMiddleware

    original = SessionMiddleware.process_request

    def noting(self, request):
        seen["middleware"] = threading.get_ident()
        return original(self, request)

    monkeypatch.setattr(SessionMiddleware, "process_request", noting)
    from django.views import defaults

    original_404 = defaults.page_not_found

    def noting_404(request, exception, template_name="404.html"):
        seen["view"] = threading.get_ident()
        return original_404(request, exception, template_name)

    monkeypatch.setattr(defaults, "page_not_found", noting_404)
    # when
    status, _ = asgi_get(sse.ASGIHandler(), "/no-such-page-anywhere/")
    # then: one worker thread, not the event loop's
    assert status == 404
    assert seen["middleware"] == seen["view"] != threading.get_ident()


def test_requests_enter_the_middleware_thread_through_the_admission_queue(monkeypatch, settings):
    # given: the configured limit and budget, and a record of the requests admitted
    settings.REQUEST_ADMISSION_LIMIT = 3
    settings.REQUEST_ADMISSION_BUDGET_MS = 40
    built: list[tuple[int, float]] = []
    admitted: list[str] = []

    class Recording(sse.Admission):
        def __init__(self, limit, budget_s):
            built.append((limit, budget_s))
            super().__init__(limit, budget_s)

        async def run(self, func, *args):
            admitted.append(args[0].path)
            return await super().run(func, *args)

    monkeypatch.setattr(sse, "Admission", Recording)
    app = sse.ASGIHandler()
    # when
    status, _ = asgi_get(app, "/no-such-page-anywhere/")
    # then: the chain ran once admitted, with the settings' limit and budget (in seconds)
    assert status == 404
    assert built == [(3, 0.04)]
    assert admitted == ["/no-such-page-anywhere/"]
