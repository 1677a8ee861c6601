"""Server-Sent Events written straight to the ASGI `send`.

A chat reply is ~45 frames. Through Django's StreamingHttpResponse each frame passes three more
generator layers (the response's __aiter__, its streaming_content wrapper with make_bytes and
a charset lookup, the handler's chunk_bytes) before ASGIHandler.send_response hands it to the
server; the profile of one message put that at ~5% of the web process's CPU per message.
`EventStreamResponse` is still an ordinary streaming response (the test client, WSGI and any
other handler read it as one), and `ASGIHandler` below, the application studyplatform.asgi
serves, sends its frames itself: one `send` per frame, nothing in between.

Disconnects behave as with Django's handler: the response task is cancelled (CancelledError
inside the frames' generator, or GeneratorExit through aclosing when it is suspended at a
yield), which is what the chat stream records as `disconnected`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, suppress

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.asgi import get_script_prefix
from django.db import DatabaseError, connection
from django.http import StreamingHttpResponse
from django.urls import set_script_prefix

from .admission import Admission

logger = logging.getLogger(__name__)


class EventStreamResponse(StreamingHttpResponse):
    """A text/event-stream response of str frames (`prelude` first, then `frames`)."""

    def __init__(self, frames: AsyncIterator[str], *, prelude: str = "") -> None:
        self.frames = frames
        self.prelude = prelude
        super().__init__(self._generic(), content_type="text/event-stream")
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # tell nginx-style proxies not to buffer the stream

    async def _generic(self) -> AsyncIterator[bytes]:
        # For everything but ASGIHandler: the test client, other ASGI handlers.
        if self.prelude:
            yield self.prelude.encode()
        async with aclosing(self.frames) as frames:
            async for frame in frames:
                yield frame.encode()

    async def send_to(self, send) -> None:
        """Send the body frame by frame (after http.response.start), then the closing message."""
        if self.prelude:
            await send(
                {"type": "http.response.body", "body": self.prelude.encode(), "more_body": True}
            )
        async with aclosing(self.frames) as frames:
            async for frame in frames:
                await send(
                    {"type": "http.response.body", "body": frame.encode(), "more_body": True}
                )
        await send({"type": "http.response.body"})


def release_connection() -> None:
    """Give this thread's database connection back (to the pool, on PostgreSQL).

    Django would release it only when the response ends, and a reply streams for seconds: with
    a pool of 20, the 21st concurrent stream would wait for someone else's reply to finish.
    Inside an atomic block (tests run in one) the connection is left alone, and so is a
    SQLite connection: it holds no server slot, and reopening it for every round (connect and
    its PRAGMAs) was ~7% of the web process's CPU per message on SQLite. Django closes it when
    the response ends, or keeps it for the thread's next request within CONN_MAX_AGE.
    """
    if not connection.in_atomic_block and connection.vendor != "sqlite":
        try:
            connection.close()
        except DatabaseError:
            # A connection that broke (the database went away) is dropped all the same; the
            # failure that matters was already raised, or will be at the next round.
            logger.warning("closing a broken database connection failed", exc_info=True)


class ASGIHandler(DjangoASGIHandler):
    """Django's ASGI handler, with the middleware run in one thread hop and EventStreamResponse
    bodies sent directly.

    Django builds the middleware chain in async mode under ASGI. Every middleware we use is a
    MiddlewareMixin, whose async mode runs process_request and process_response each through
    its own sync_to_async hop: ~20 hops per request, each a trip through the event loop to the
    request's thread and back. Under load every hop queues behind the other streams' work in
    the loop, which is where most of the chat send's added time-to-first-token went. Here the
    chain is built in sync mode (what WSGI runs, the same middleware in the same order) and
    entered through one hop; a sync view (the chat send) runs in that same thread, an async
    view through async_to_sync, as Django does under WSGI. The streamed body is then sent from
    the event loop, as before. Requests enter that thread in arrival order, a few at a time
    (core/admission.py: REQUEST_ADMISSION_LIMIT, REQUEST_ADMISSION_BUDGET_MS). The
    request_started signal is sent in that hop too (handle()).
    """

    def __init__(self):
        super().__init__()
        self._threads = RequestThreads(settings.REQUEST_THREADS_KEPT)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._threads.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self._threads.give(executor)

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)
        if is_async:
            chain = self._middleware_chain

            def run_chain(request):
                # handle() left the signal to this hop: its receivers (Django's
                # reset_queries and close_old_connections) work on this thread's connection.
                signals.request_started.send(sender=self.__class__, scope=request.scope)
                response = chain(request)
                if isinstance(response, EventStreamResponse):
                    # A stream lasts seconds and does its own database rounds: hand the
                    # thread's connection back now rather than when the stream ends.
                    release_connection()
                return response

            hop = sync_to_async(run_chain, thread_sensitive=True)
            admission = Admission(
                settings.REQUEST_ADMISSION_LIMIT, settings.REQUEST_ADMISSION_BUDGET_MS / 1000
            )

            async def admitted_chain(request):
                return await admission.run(hop, request)

            self._middleware_chain = admitted_chain

    async def handle(self, scope, receive, send):
        """Answer one HTTP request: Django's flow (read the body, build the request, get and
        send the response while listening for the client going away, then close it), except
        that `request_started` is sent at the start of the middleware's thread hop
        (run_chain) instead of through a hop of its own before it. Its receivers ran in the
        request's thread either way; the separate hop was a round trip through the event
        loop, and two thread wake-ups, before every response (~0.2 ms of the chat send's
        time to first token). A request that cannot be built (an error response, no
        middleware run) has the signal sent here, as before."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            await signals.request_started.asend(sender=self.__class__, scope=scope)
            body_file.close()
            await self.send_response(error_response, send)
            await sync_to_async(error_response.close)()
            return

        async def respond():
            response = await self.run_get_response(request)
            # The client leaving mid-send cancels this task (below), which ends the send.
            with suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        # The disconnect listener first: it must not fail, and whichever ends first cancels
        # the other (a disconnect cancels the view or the stream: see EventStreamResponse).
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        responder = asyncio.create_task(respond())
        try:
            await asyncio.wait((listener, responder), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (listener, responder):
                if not task.done():
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
        for task in (listener, responder):
            if task.cancelled():
                continue
            error = task.exception()
            if error is None or isinstance(error, RequestAborted):
                continue
            body_file.close()
            raise error
        if responder.cancelled():
            await signals.request_finished.asend(sender=self.__class__)
        else:
            await sync_to_async(responder.result().close)()
        body_file.close()

    async def send_response(self, response, send):
        if not isinstance(response, EventStreamResponse):
            return await super().send_response(response, send)
        headers = [(k.encode("ascii"), v.encode("latin1")) for k, v in response.items()]
        for cookie in response.cookies.values():
            headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        await response.send_to(send)


class RequestThreads:
    """The threads requests run their synchronous work in, kept for the next request.

    Django enters each request into a ThreadSensitiveContext of its own, whose sync work then
    runs in a thread started for that request, and on leaving it starts a second thread to
    join the first: two thread starts per request, each new thread with cold caches, on the
    chat send's path before the model call. Here a request borrows a single-thread executor
    (one request's sync work still runs in one thread, one call at a time, as Django
    requires) and gives it back when it ends; up to `kept` idle ones are kept, any more are
    shut down.

    An executor is taken again only once everything queued on it has run: sync work whose
    awaiting request was cancelled (a disconnect) finishes first, so the next request never
    waits behind it. What Django keeps per request (the active language, the time zone) lives
    in the request's context, not the thread. Database connections belong to the thread, as
    under any WSGI server, which reuses its threads the same way: at the end of each request
    Django closes them (PostgreSQL: back to the pool) or, within CONN_MAX_AGE (SQLite's
    default, 300 s), keeps them for the thread's next request; at most one request uses a
    thread at a time.
    """

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._idle: list[ThreadPoolExecutor] = []

    def take(self) -> ThreadPoolExecutor:
        try:
            return self._idle.pop()
        except IndexError:
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give(self, executor: ThreadPoolExecutor) -> None:
        # Queued behind whatever the request left running; list.append and len are atomic
        # under the GIL, and the callback runs in the executor's own thread.
        def done(_future) -> None:
            if len(self._idle) < self.kept:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)

        try:
            queued = executor.submit(int)
        except RuntimeError:  # the interpreter is shutting down: nothing to keep it for
            executor.shutdown(wait=False)
            return
        queued.add_done_callback(done)


def get_asgi_application() -> ASGIHandler:
    """django.core.asgi.get_asgi_application, with the handler above."""
    import django

    django.setup(set_prefix=False)
    return ASGIHandler()
