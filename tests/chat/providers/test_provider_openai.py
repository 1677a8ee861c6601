"""The OpenAI-compatible provider against the fake upstream over real loopback sockets."""

import math
import socket
import time

import pytest

from studyplatform.chat.providers import (
    ChatRequest,
    ProviderConfig,
    ProviderError,
    StreamEnd,
    TextDelta,
    Timeouts,
    collect,
)
from studyplatform.chat.providers.openai_compat import OpenAICompatProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
async def make_provider():
    """Build providers for the test and close their HTTP clients on the test's loop."""
    made = []

    def make(upstream, **config):
        made.append(OpenAICompatProvider(ProviderConfig(base_url=upstream.base_url, **config)))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def make_request(text, *, system=None, params=None, timeout=None):
    return ChatRequest(
        model="gpt-test",
        messages=[{"role": "user", "content": text}],
        system=system,
        params=params or {},
        timeout=timeout or Timeouts(connect=2, read=5, total_deadline_before_first_token=5),
    )


async def stream_until_error(provider, request):
    """Collect text deltas until the stream raises; return (text, error)."""
    parts = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(request):
            if isinstance(event, TextDelta):
                parts.append(event.text)
    return "".join(parts), caught.value


async def test_openai_provider_reports_upstream_usage_and_model(make_provider, upstream):
    # given: an upstream that answers with a fixed reply under a different model name
    provider = make_provider(upstream)
    request = make_request(
        "[[reply: hello brave new world]] [[model: gpt-x-2024]]",
        system="Be kind.",
        params={"temperature": 0.2, "seed": 7, "max_tokens": 50},
    )
    # when
    text, end = await collect(provider.stream(request))
    # then: text, model, fingerprint and the upstream's exact counts are reported
    assert text == "hello brave new world"
    assert end.model_reported == "gpt-x-2024"
    assert end.system_fingerprint == "fp_fake_upstream"
    assert end.response_id.startswith("chatcmpl-fake")
    assert end.finish_reason == "stop"
    # the fake counts words + 3 per message: system (2 + 3) + user (7 + 3)
    assert (end.prompt_tokens, end.completion_tokens, end.usage_estimated) == (15, 4, False)
    # and the request carried the system prompt first, the arm params and include_usage
    body = upstream.requests[0]
    assert body["messages"][0] == {"role": "system", "content": "Be kind."}
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.2, 7, 50)


async def test_openai_provider_streams_text_in_order_as_several_deltas(make_provider, upstream):
    provider = make_provider(upstream)
    # given: tokens 20 ms apart, read as they come (what a read finds buffered is one delta)
    paced = make_request("[[tokens: 9]] [[delay_ms: 20]] tell me more")
    events = [e async for e in provider.stream(paced)]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].completion_tokens == 9
    assert "".join(d.text for d in deltas).startswith("Fake reply to: tell me more")


async def test_openai_provider_normalises_finish_reason_length(make_provider, upstream):
    provider = make_provider(upstream)
    _, scripted = await collect(provider.stream(make_request("[[finish: length]] hi")))
    text, truncated = await collect(
        provider.stream(make_request("[[tokens: 10]] hi", params={"max_tokens": 3}))
    )
    assert scripted.finish_reason == "length"
    assert truncated.finish_reason == "length"
    assert truncated.completion_tokens == 3
    assert len(text.split()) == 3


async def test_openai_provider_estimates_and_flags_missing_usage(make_provider, upstream):
    provider = make_provider(upstream)
    request = make_request("[[fault: no_usage]] [[reply: twelve chars and more]]", system="sys")
    text, end = await collect(provider.stream(request))
    assert text == "twelve chars and more"
    assert end.usage_estimated is True
    assert end.completion_tokens == math.ceil(len(text) / 4)
    content = request.messages[0]["content"]
    assert end.prompt_tokens == math.ceil(len("sys") / 4) + math.ceil(len(content) / 4)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_openai_provider_reports_rate_limit_and_server_errors_as_transient(
    make_provider, upstream, status
):
    provider = make_provider(upstream)
    text, error = await stream_until_error(provider, make_request(f"[[fault: {status}]] hi"))
    assert text == ""
    assert error.status == status
    assert error.transient is True
    assert error.before_first_token is True


async def test_openai_provider_reports_bad_request_as_permanent(make_provider, upstream):
    upstream.script(fault="400")
    _, error = await stream_until_error(make_provider(upstream), make_request("hi"))
    assert (error.status, error.transient) == (400, False)


async def test_openai_provider_fails_a_stalled_stream_with_a_read_timeout(make_provider, upstream):
    provider = make_provider(upstream)
    request = make_request(
        "[[fault: stall]] hi",
        timeout=Timeouts(connect=2, read=0.3, total_deadline_before_first_token=10),
    )
    started = time.monotonic()
    text, error = await stream_until_error(provider, request)
    assert text == ""
    assert "read timeout" in error.message
    assert error.transient is True
    assert error.before_first_token is True
    assert time.monotonic() - started < 5


async def test_openai_provider_enforces_the_first_token_deadline(make_provider, upstream):
    # given: a slow first token and a read timeout longer than the first-token deadline
    provider = make_provider(upstream)
    request = make_request(
        "[[ttft_ms: 3000]] hi",
        timeout=Timeouts(connect=2, read=10, total_deadline_before_first_token=0.3),
    )
    started = time.monotonic()
    _, error = await stream_until_error(provider, request)
    assert error.message == "no reply within 0.3 s"
    assert error.transient is True
    assert time.monotonic() - started < 2.5


async def test_openai_provider_keeps_partial_text_when_upstream_disconnects(
    make_provider, upstream
):
    provider = make_provider(upstream)
    request = make_request("[[fault: disconnect_after: 3]] [[reply: one two three four five]]")
    text, error = await stream_until_error(provider, request)
    assert text == "one two three"
    assert error.before_first_token is False
    assert error.transient is True
    assert error.status is None


async def test_openai_provider_reports_refused_connection_as_transient():
    # given: a loopback port with nothing listening
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with OpenAICompatProvider(
        ProviderConfig(base_url=f"http://127.0.0.1:{port}/v1")
    ) as provider:
        _, error = await stream_until_error(provider, make_request("hi"))
    assert error.transient is True
    assert error.status is None
    assert "connection to upstream failed" in error.message


async def test_openai_provider_rejects_params_that_would_override_the_request(
    make_provider, upstream
):
    provider = make_provider(upstream)
    _, error = await stream_until_error(provider, make_request("hi", params={"stream": False}))
    assert error.message == "arm params may not set ['stream']"
    assert error.transient is False
    assert upstream.requests == []


async def test_openai_check_makes_a_non_streamed_round_trip(make_provider, upstream):
    provider = make_provider(upstream)
    upstream.script(reply="OK")
    reply = await provider.check("gpt-test")
    assert reply == "OK"
    body = upstream.requests[0]
    assert body["model"] == "gpt-test"
    assert not body.get("stream")


async def test_openai_provider_reads_the_api_key_from_the_named_env_var_at_call_time(
    make_provider, upstream, monkeypatch
):
    # given: a config naming a custom variable (the key itself is nowhere in the config)
    monkeypatch.setenv("STUDY_LLM_KEY", "first-key")
    provider = make_provider(upstream, api_key_env="STUDY_LLM_KEY")
    await collect(provider.stream(make_request("hi")))
    # when: the key is rotated in the environment
    monkeypatch.setenv("STUDY_LLM_KEY", "rotated-key")
    await collect(provider.stream(make_request("hi again")))
    # then: each request used the key the environment held at that moment
    auth = [r.headers["authorization"] for r in upstream.log]
    assert auth == ["Bearer first-key", "Bearer rotated-key"]


async def test_openai_provider_without_its_key_fails_naming_the_variable(
    make_provider, upstream, monkeypatch
):
    monkeypatch.delenv("OPENAI_API_KEY")
    _, error = await stream_until_error(make_provider(upstream), make_request("hi"))
    assert error.message == (
        "environment variable OPENAI_API_KEY is not set; "
        "it must hold the API key for this openai provider"
    )
    assert error.transient is False
    assert upstream.log == []


def test_chunk_decoding_keeps_choice_zero_and_the_last_usage_and_model():
    from studyplatform.chat.providers.openai_compat import _ChunkState

    state = _ChunkState()
    first = '{"id": "c1", "model": "m-1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}'
    assert state.feed(first) == ["Hi"]
    other = '{"choices": [{"index": 1, "delta": {"content": "ignored"}, "finish_reason": "stop"}]}'
    assert state.feed(other) == []
    assert state.raw_finish is None
    last = (
        '{"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],'
        ' "usage": {"prompt_tokens": 3, "completion_tokens": 1}, "system_fingerprint": "fp"}'
    )
    assert state.feed(last) == []
    assert (state.model, state.response_id, state.fingerprint) == ("m-1", "c1", "fp")
    assert state.raw_finish == "length" and state.usage["completion_tokens"] == 1


@pytest.mark.parametrize(
    ("data", "message", "transient"),
    [
        ('{"error": {"message": "overloaded"}}', "upstream error in stream: overloaded", True),
        ("{not json", "malformed chunk", False),
        ("[1, 2]", "malformed chunk", False),
    ],
)
def test_chunk_decoding_turns_error_objects_and_garbage_into_provider_errors(
    data, message, transient
):
    from studyplatform.chat.providers.openai_compat import _ChunkState

    with pytest.raises(ProviderError, match=message) as caught:
        _ChunkState().feed(data)
    assert caught.value.transient is transient
