"""The OpenAI-compatible provider's own HTTP/1.1 reader (lean_http) against raw loopback
servers that control every byte: chunk and TCP boundaries inside a line or a UTF-8 character,
broken bodies, error statuses, stalls with cancellation, keep-alive reuse, proxies, redirects.
"""

import asyncio
import json

import pytest

from studyplatform.chat.providers import ChatRequest, ProviderConfig, ProviderError, Timeouts
from studyplatform.chat.providers.base import TextDelta, collect
from studyplatform.chat.providers.openai_compat import OpenAICompatProvider

pytestmark = pytest.mark.anyio


def request(read=5.0):
    return ChatRequest(
        model="gpt-test",
        messages=[{"role": "user", "content": "hi"}],
        timeout=Timeouts(connect=2, read=read, total_deadline_before_first_token=5),
    )


def event(content=None, finish=None, usage=None) -> bytes:
    chunk = {"id": "r1", "model": "gpt-test", "choices": []}
    if content is not None or finish is not None:
        delta = {"content": content} if content is not None else {}
        chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage:
        chunk["usage"] = usage
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class RawServer:
    """A loopback server running `handler(reader, writer, index)` per connection; it records
    each request head and counts connections."""

    def __init__(self, handler):
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.closed = asyncio.Event()

    async def _serve(self, reader, writer):
        index = self.connections
        self.connections += 1
        try:
            await self.handler(self, reader, writer, index)
        finally:
            writer.close()

    async def read_request(self, reader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        return head

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        return self

    async def __aexit__(self, *exc):
        self.server.close()


@pytest.fixture
async def provider_for():
    made = []

    def make(base_url):
        made.append(OpenAICompatProvider(ProviderConfig(base_url=base_url)))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


async def test_lines_and_utf8_characters_split_across_chunks_and_reads(provider_for):
    # given: a body whose chunks end inside a `data:` line and inside multi-byte characters
    # ("é" is 2 bytes, the emoji 4), and whose writes split a chunk-size line and a chunk's CRLF
    body = event("Olá, ") + event("café 🙂 ") + event("fim", "stop")
    body += event(usage={"prompt_tokens": 7, "completion_tokens": 3}) + b"data: [DONE]\n\n"
    emoji = body.index("🙂".encode())
    accent = body.index("é".encode())
    cuts = [5, accent + 1, emoji + 2, emoji + 3, len(body) - 9]
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    wire = HEAD + chunked(*pieces) + b"0\r\n\r\n"

    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        for at in range(0, len(wire), 7):  # 7-byte writes: every boundary lands somewhere odd
            writer.write(wire[at : at + 7])
            await writer.drain()
            await asyncio.sleep(0)

    async with RawServer(handler) as server:
        text, end = await collect(provider_for(server.base_url).stream(request()))
    assert text == "Olá, café 🙂 fim"
    assert (end.finish_reason, end.prompt_tokens, end.completion_tokens) == ("stop", 7, 3)
    assert end.usage_estimated is False
    head = server.heads[0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head


async def test_a_body_cut_mid_chunk_is_a_transient_error_after_the_text_so_far(provider_for):
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(HEAD + chunked(event("one "), event("two ")) + b'40\r\ndata: {"ch')
        await writer.drain()

    async with RawServer(handler) as server:
        parts = []
        with pytest.raises(ProviderError) as caught:
            async for item in provider_for(server.base_url).stream(request()):
                parts.append(item.text)
    assert "".join(parts) == "one two "
    assert caught.value.transient is True
    assert caught.value.before_first_token is False
    assert "closed the stream early" in caught.value.message


async def test_chunks_already_buffered_come_out_as_one_delta_and_trailers_end_the_body(
    provider_for,
):
    # given: three events written at once, then (once the first delta was read) the last one
    # and a body end with a trailer
    first_read = asyncio.Event()

    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(HEAD + chunked(event("one "), event("two "), event("three ")))
        await writer.drain()
        await first_read.wait()
        last = event("end", "stop") + b"data: [DONE]\n\n"
        writer.write(chunked(last) + b"0\r\nx-checksum: abc\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        deltas = []
        async for item in provider_for(server.base_url).stream(request()):
            if isinstance(item, TextDelta):
                deltas.append(item.text)
                first_read.set()
    # then: the three buffered events are one delta, the later one another
    assert deltas == ["one two three ", "end"]


async def test_trailers_that_never_end_are_refused_not_buffered_forever(provider_for):
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(HEAD + chunked(event("one ")) + b"0\r\n")
        for _ in range(80):  # 80 KiB of trailer bytes without the closing empty line
            writer.write(b"x" * 1024)
            await writer.drain()

    async with RawServer(handler) as server:
        with pytest.raises(ProviderError) as caught:
            async for _item in provider_for(server.base_url).stream(request()):
                pass
    assert "oversized trailers" in caught.value.message


async def test_a_malformed_chunk_size_is_a_transient_error(provider_for):
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(HEAD + chunked(event("one ")) + b"-5\r\nabc\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        with pytest.raises(ProviderError) as caught:
            async for _item in provider_for(server.base_url).stream(request()):
                pass
    assert "malformed chunk size" in caught.value.message
    assert caught.value.transient is True


@pytest.mark.parametrize(
    ("status", "extra", "transient", "retry_after"),
    [(429, b"retry-after: 3\r\n", True, 3.0), (500, b"", True, None), (401, b"", False, None)],
)
async def test_error_statuses_carry_the_upstream_message_and_retry_rule(
    provider_for, status, extra, transient, retry_after
):
    payload = json.dumps({"error": {"message": "slow down please"}}).encode()

    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(
            b"HTTP/1.1 %d Whatever\r\ncontent-type: application/json\r\n%scontent-length: %d"
            b"\r\n\r\n%s" % (status, extra, len(payload), payload)
        )
        await writer.drain()
        await reader.read()  # keep the connection open: the client must not wait for its end

    async with RawServer(handler) as server:
        with pytest.raises(ProviderError) as caught:
            await collect(provider_for(server.base_url).stream(request()))
    error = caught.value
    assert error.message == f"upstream returned HTTP {status}: slow down please"
    assert (error.status, error.transient, error.retry_after) == (status, transient, retry_after)
    assert error.before_first_token is True


async def test_a_stalled_upstream_is_cancelled_and_its_connection_closed(provider_for):
    # given: an upstream that sends one token and then goes silent
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(HEAD + chunked(event("first ")))
        await writer.drain()
        assert await reader.read() == b""  # the client closed the connection
        server.closed.set()

    async with RawServer(handler) as server:
        provider = provider_for(server.base_url)
        got_first = asyncio.Event()

        async def consume():
            async for item in provider.stream(request(read=30)):
                if isinstance(item, TextDelta):
                    got_first.set()

        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(got_first.wait(), 5)
        # when: the participant's Stop / disconnect cancels the reading task
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # then: the upstream sees the connection closed, promptly
        await asyncio.wait_for(server.closed.wait(), 2)


async def test_a_silent_upstream_fails_with_the_read_timeout(provider_for):
    async def handler(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(HEAD + chunked(event("first ")))
        await writer.drain()
        await reader.read()

    async with RawServer(handler) as server:
        with pytest.raises(ProviderError) as caught:
            await collect(provider_for(server.base_url).stream(request(read=0.3)))
    assert caught.value.message == "upstream read timeout"
    assert caught.value.before_first_token is False


async def test_keep_alive_connection_is_reused_and_a_stale_one_retried(provider_for):
    complete = HEAD + chunked(event("ok", "stop"), b"data: [DONE]\n\n") + b"0\r\n\r\n"

    async def handler(server, reader, writer, index):
        # The first connection answers twice, then closes while idle (a keep-alive timeout).
        for _ in range(2 if index == 0 else 1):
            await server.read_request(reader)
            writer.write(complete)
            await writer.drain()

    async with RawServer(handler) as server:
        provider = provider_for(server.base_url)
        for _ in range(2):
            text, end = await collect(provider.stream(request()))
            assert (text, end.finish_reason) == ("ok", "stop")
        assert server.connections == 1
        await asyncio.sleep(0.05)  # the server has closed the idle connection by now
        text, _ = await collect(provider.stream(request()))
    assert text == "ok"
    assert server.connections == 2


async def test_a_redirect_is_not_followed(provider_for):
    # The endpoint registry names the only host a call may reach; a 3xx must not move the
    # request (and its key) anywhere else.
    async def elsewhere(server, reader, writer, index):
        await server.read_request(reader)

    async with RawServer(elsewhere) as other:

        async def handler(server, reader, writer, index):
            await server.read_request(reader)
            writer.write(
                b"HTTP/1.1 307 Temporary Redirect\r\nlocation: %s/chat/completions\r\n"
                b"content-length: 0\r\n\r\n" % other.base_url.encode()
            )
            await writer.drain()

        async with RawServer(handler) as server:
            with pytest.raises(ProviderError):
                await collect(provider_for(server.base_url).stream(request()))
    assert other.connections == 0


async def test_a_proxied_endpoint_goes_through_the_proxy(provider_for, monkeypatch):
    # given: HTTP_PROXY set in the environment; the "proxy" answers the stream itself
    async def proxy(server, reader, writer, index):
        await server.read_request(reader)
        writer.write(HEAD + chunked(event("via proxy", "stop"), b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async with RawServer(proxy) as server:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        text, end = await collect(provider_for("http://upstream.invalid/v1").stream(request()))
    assert (text, end.finish_reason) == ("via proxy", "stop")
    # The request line names the absolute URL: it was sent to the proxy, for the endpoint.
    assert server.heads[0].startswith(b"POST http://upstream.invalid/v1/chat/completions ")
