"""The fake upstream speaks the OpenAI and Anthropic streaming protocols over real HTTP."""

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.support.fake_upstream import FakeUpstream

REPO = Path(__file__).resolve().parents[3]


def sse_data(text):
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def post_stream(upstream, content, **extra):
    body = {
        "model": "gpt-test",
        "stream": True,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }
    return httpx2.post(f"{upstream.base_url}/chat/completions", json=body, timeout=5)


def test_fake_upstream_streams_openai_chunks_with_usage_then_done(upstream):
    # when
    response = post_stream(upstream, "[[reply: a b c]]", stream_options={"include_usage": True})
    # then
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    data = sse_data(response.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({(c["id"], c["created"], c["model"], c["system_fingerprint"]) for c in chunks}) == 1
    content = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert content == ["a", " b", " c", None]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, "stop"]
    assert chunks[-1]["choices"] == []
    # prompt: 4 words ("[[reply:", "a", "b", "c]]") + 3 per message; completion: one per word
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_fake_upstream_sends_no_usage_chunk_unless_asked(upstream):
    chunks = [json.loads(d) for d in sse_data(post_stream(upstream, "hi").text)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert "usage" not in chunks[-1]


def test_fake_upstream_streams_anthropic_events_in_protocol_order(upstream):
    body = {"model": "claude-test", "max_tokens": 100, "stream": True}
    body["messages"] = [{"role": "user", "content": "[[reply: x y]]"}]
    response = httpx2.post(f"{upstream.anthropic_base_url}/v1/messages", json=body, timeout=5)
    events = [line[7:] for line in response.text.split("\n") if line.startswith("event: ")]
    assert events == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    payloads = [json.loads(d) for d in sse_data(response.text)]
    assert payloads[-2]["delta"]["stop_reason"] == "end_turn"
    assert payloads[-2]["usage"] == {"output_tokens": 2}


def test_fake_upstream_lists_models(upstream):
    response = httpx2.get(f"{upstream.base_url}/models", timeout=5)
    assert response.json()["object"] == "list"
    assert "fake-model" in [m["id"] for m in response.json()["data"]]


def test_fake_upstream_answers_several_requests_on_one_keep_alive_connection(upstream):
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        replies = []
        for _ in range(3):
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            header, _, rest = head.partition(b"\r\n\r\n")
            length = int(header.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += sock.recv(4096)
            replies.append(header.split(b"\r\n")[0])
    assert replies == [b"HTTP/1.1 200 OK"] * 3
    assert len(upstream.log) == 3


def test_fake_upstream_scripts_apply_to_the_next_requests_only(upstream):
    # given
    upstream.script(count=2, fault="503")
    # when
    statuses = [post_stream(upstream, "hi").status_code for _ in range(3)]
    # then
    assert statuses == [503, 503, 200]
    assert len(upstream.requests) == 3
    assert upstream.requests[0]["messages"][0]["content"] == "hi"


def test_fake_upstream_fails_identical_requests_only_the_given_number_of_times(upstream):
    statuses = [post_stream(upstream, "[[fault: 429 times: 2]] x").status_code for _ in range(3)]
    other = post_stream(upstream, "[[fault: 429 times: 2]] a different body").status_code
    assert statuses == [429, 429, 200]
    assert other == 429


def test_fake_upstream_rejects_a_script_with_an_unknown_fault(upstream):
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        upstream.script(fault="explode")


def test_fake_upstream_answers_unknown_paths_with_404(upstream):
    assert httpx2.post(f"{upstream.base_url}/embeddings", json={}, timeout=5).status_code == 404


def test_fake_upstream_serves_fifty_concurrent_streams(upstream):
    async def one(client, i):
        body = {
            "model": "gpt-test",
            "stream": True,
            "messages": [{"role": "user", "content": f"[[tokens: 20]] [[delay_ms: 5]] n{i}"}],
        }
        response = await client.post(f"{upstream.base_url}/chat/completions", json=body)
        return sse_data(response.text)

    async def main():
        limits = httpx2.Limits(max_connections=60)
        async with httpx2.AsyncClient(timeout=10, limits=limits) as client:
            return await asyncio.gather(*(one(client, i) for i in range(50)))

    results = asyncio.run(main())
    # 20 content chunks + the finish chunk + [DONE] in each of the 50 streams
    assert [len(r) for r in results] == [22] * 50
    assert len(upstream.requests) == 50


def test_fake_upstream_runs_standalone_from_the_command_line():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_upstream", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        assert first_line.strip() == f"fake upstream: OpenAI base_url http://127.0.0.1:{port}/v1"
        response = httpx2.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_fake_upstream_runs_under_uvicorns_own_command_line():
    # The benchmarks start it this way (benchmarks/support.fake_upstream_command).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "tests.support.fake_upstream:create_app"]
    command += ["--factory", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = post_stream(upstream_at(port), "[[reply: one two]]")
                break
            except httpx2.ConnectError:
                assert time.monotonic() < deadline, "uvicorn did not serve the fake in 20 s"
                time.sleep(0.1)
        assert sse_data(response.text)[-1] == "[DONE]"
    finally:
        process.terminate()
        process.wait(timeout=5)


def upstream_at(port):
    return FakeUpstream(port=port)  # unstarted: only its base_url is used


def test_fake_upstream_stops_promptly_while_a_stream_is_stalled():
    upstream = FakeUpstream().start()
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        body = json.dumps(
            {
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": "[[fault: stall]]"}],
            }
        ).encode()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        upstream.stop()
        assert time.monotonic() - started < 2
