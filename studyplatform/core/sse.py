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

from collections.abc import AsyncIterator
from contextlib import aclosing

from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.http import StreamingHttpResponse


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


class ASGIHandler(DjangoASGIHandler):
    """Django's ASGI handler, sending EventStreamResponse bodies directly."""

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


def get_asgi_application() -> ASGIHandler:
    """django.core.asgi.get_asgi_application, with the handler above."""
    import django

    django.setup(set_prefix=False)
    return ASGIHandler()
