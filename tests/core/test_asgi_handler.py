"""The ASGI application (core/sse.py): the synchronous middleware run in one thread hop, and an
event stream's database connection handed back before it streams (issue 19)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref import sync as asgiref_sync

from studyplatform.core import sse


def asgi_get(app, path: str, query_string: bytes = b"") -> tuple[int, bytes]:
    """One GET through the ASGI application; returns the status and the body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
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
    # then: the middleware and the view ran inside one hop, request_started with them; the
    # others are the 404's log line and the response's close (Django's own handler makes ~20
    # hops here, two for each middleware with process_request and process_response, and one
    # for request_started)
    assert status == 404
    chain_hops = [name for name in hops if "run_chain" in name]
    assert chain_hops == ["ASGIHandler.load_middleware.<locals>.run_chain"]
    assert not [name for name in hops if "sync_send" in name], hops
    assert len(hops) <= 3, hops


def test_request_started_is_sent_in_the_requests_thread_before_the_middleware(monkeypatch):
    # given: a request_started receiver and a middleware that note when and where they run
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.core import signals

    events: list[tuple[str, int]] = []

    def started(sender, scope, **kwargs):
        events.append((f"started {scope['path']}", threading.get_ident()))

    original = SessionMiddleware.process_request

    def noting(self, request):
        events.append(("middleware", threading.get_ident()))
        return original(self, request)

    monkeypatch.setattr(SessionMiddleware, "process_request", noting)
    signals.request_started.connect(started)
    try:
        # when
        status, _ = asgi_get(sse.ASGIHandler(), "/no-such-page-anywhere/")
    finally:
        signals.request_started.disconnect(started)
    # then: the signal came once, with the request's scope, first, in the middleware's thread
    assert status == 404
    assert [name for name, _ in events] == ["started /no-such-page-anywhere/", "middleware"]
    assert events[0][1] == events[1][1] != threading.get_ident()


def test_a_request_that_cannot_be_built_still_starts_and_finishes_once():
    # given: receivers counting the request signals
    from django.core import signals

    seen: list[str] = []

    def started(sender, **kwargs):
        seen.append("started")

    def finished(sender, **kwargs):
        seen.append("finished")

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        # when: a query string that is not UTF-8 (no request object can be built)
        status, _ = asgi_get(sse.ASGIHandler(), "/", query_string=b"q=%\xff\xfe")
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    # then: 400, and the signals paired as for any other request
    assert status == 400
    assert seen == ["started", "finished"]


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


def _noting_404_thread(monkeypatch) -> list[int]:
    """The thread every 404 view runs in, in order."""
    from django.views import defaults

    threads: list[int] = []
    original_404 = defaults.page_not_found

    def noting_404(request, exception, template_name="404.html"):
        threads.append(threading.get_ident())
        return original_404(request, exception, template_name)

    monkeypatch.setattr(defaults, "page_not_found", noting_404)
    return threads


def test_the_next_request_runs_in_the_thread_the_last_one_gave_back(monkeypatch):
    # given: the application, and the threads its views run in
    threads = _noting_404_thread(monkeypatch)
    app = sse.ASGIHandler()
    # when: two requests, one after the other
    asgi_get(app, "/no-such-page-anywhere/")
    wait_for_idle(app._threads, 1)
    asgi_get(app, "/no-such-page-anywhere/")
    # then: the second reused the first's thread instead of starting (and joining) a new one
    assert len(threads) == 2 and threads[0] == threads[1] != threading.get_ident()


def wait_for_idle(threads: sse.RequestThreads, count: int) -> None:
    for _ in range(500):
        if len(threads._idle) == count:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{len(threads._idle)} idle threads, not {count}")


def test_a_thread_is_lent_again_only_once_the_work_left_on_it_has_run():
    # given: a request ended (cancelled) while its sync work still runs in its thread
    threads = sse.RequestThreads(kept=4)
    executor = threads.take()
    release = threading.Event()
    executor.submit(release.wait)
    threads.give(executor)
    # then: not lent to the next request while that work runs: it gets a thread of its own
    other = threads.take()
    assert other is not executor
    # and once the work is done, the thread is kept for the next one
    release.set()
    wait_for_idle(threads, 1)
    assert threads.take() is executor
    other.shutdown()
    executor.shutdown()


def test_threads_beyond_the_kept_number_are_shut_down():
    threads = sse.RequestThreads(kept=1)
    first, second = threads.take(), threads.take()
    threads.give(first)
    wait_for_idle(threads, 1)
    threads.give(second)
    for _ in range(500):
        if second._shutdown:
            break
        threading.Event().wait(0.01)
    assert threads._idle == [first] and second._shutdown
    first.shutdown()


def test_a_request_in_a_reused_thread_starts_from_its_own_defaults(monkeypatch):
    # given: a view noting its thread and active language, and a first request that switches
    # the language (state Django keeps in the request's context, not in the thread)
    from django.utils import translation
    from django.views import defaults

    seen: list[tuple[int, str]] = []

    def noting_404(request, exception, template_name="404.html"):
        seen.append((threading.get_ident(), translation.get_language()))
        translation.activate("pt-br")
        return defaults.HttpResponseNotFound("gone")

    monkeypatch.setattr(defaults, "page_not_found", noting_404)
    app = sse.ASGIHandler()
    # when
    for _ in range(2):
        asgi_get(app, "/no-such-page-anywhere/")
        wait_for_idle(app._threads, 1)
    # then: the same thread, and the second request did not inherit the first's language
    (thread1, language1), (thread2, language2) = seen
    assert thread1 == thread2
    assert language1 == language2 != "pt-br"


def test_a_thread_that_can_take_no_more_work_is_not_kept():
    # given: an executor that refuses new work (as every executor does at interpreter exit)
    threads = sse.RequestThreads(kept=4)
    executor = threads.take()
    executor.shutdown()
    # when: its request ends
    threads.give(executor)
    # then: no error, and it is not lent again
    assert threads._idle == []
    assert threads.take() is not executor
