"""The Anthropic provider against the fake upstream's Messages endpoint over loopback."""

import math
import time

import pytest

from studyplatform.chat.providers import (
    ChatRequest,
    ProviderConfig,
    ProviderError,
    TextDelta,
    Timeouts,
    collect,
)
from studyplatform.chat.providers.anthropic_provider import AnthropicProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
async def provider(upstream):
    async with AnthropicProvider(ProviderConfig(base_url=upstream.anthropic_base_url)) as made:
        yield made


def make_request(text, *, system=None, params=None, read=5.0):
    return ChatRequest(
        model="claude-test",
        messages=[{"role": "user", "content": text}],
        system=system,
        params=params or {},
        timeout=Timeouts(connect=2, read=read, total_deadline_before_first_token=10),
    )


async def stream_until_error(provider, request):
    parts = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(request):
            if isinstance(event, TextDelta):
                parts.append(event.text)
    return "".join(parts), caught.value


async def test_anthropic_provider_reports_usage_from_message_start_and_delta(provider, upstream):
    # given
    request = make_request(
        "[[reply: a calm answer]] [[model: claude-pinned-2024]]",
        system="Be kind.",
        params={"temperature": 0.5, "top_k": 40, "seed": 3, "stop": ["END"]},
    )
    # when
    text, end = await collect(provider.stream(request))
    # then
    assert text == "a calm answer"
    assert end.model_reported == "claude-pinned-2024"
    assert end.response_id.startswith("msg_fake")
    assert end.system_fingerprint is None
    assert (end.finish_reason, end.raw_finish_reason) == ("stop", "end_turn")
    # input tokens come from message_start (fake: words + 3 per message, system included)
    # system (2 + 3) + user (6 + 3)
    assert (end.prompt_tokens, end.completion_tokens, end.usage_estimated) == (14, 3, False)
    body = upstream.requests[0]
    assert body["system"] == "Be kind."
    assert body["messages"] == [{"role": "user", "content": request.messages[0]["content"]}]
    assert body["max_tokens"] == 1024
    assert body["stop_sequences"] == ["END"]
    assert (body["temperature"], body["top_k"]) == (0.5, 40)
    assert "seed" not in body


async def test_anthropic_provider_maps_max_tokens_stop_to_length(provider):
    text, end = await collect(
        provider.stream(make_request("[[tokens: 8]] go on", params={"max_tokens": 2}))
    )
    assert (end.finish_reason, end.raw_finish_reason) == ("length", "max_tokens")
    assert end.completion_tokens == 2
    assert text == "Fake reply"


async def test_anthropic_provider_estimates_and_flags_missing_usage(provider):
    text, end = await collect(provider.stream(make_request("[[fault: no_usage]] hello")))
    assert end.usage_estimated is True
    assert end.completion_tokens == math.ceil(len(text) / 4)
    assert end.prompt_tokens == math.ceil(len("[[fault: no_usage]] hello") / 4)


@pytest.mark.parametrize("status", [429, 500, 529])
async def test_anthropic_provider_reports_rate_limit_and_overload_as_transient(provider, status):
    text, error = await stream_until_error(provider, make_request(f"[[fault: {status}]] hi"))
    assert text == ""
    assert (error.status, error.transient, error.before_first_token) == (status, True, True)


async def test_anthropic_provider_reports_bad_request_as_permanent(provider, upstream):
    upstream.script(fault="400")
    _, error = await stream_until_error(provider, make_request("hi"))
    assert (error.status, error.transient) == (400, False)


async def test_anthropic_provider_fails_a_stalled_stream_with_a_read_timeout(provider):
    started = time.monotonic()
    text, error = await stream_until_error(provider, make_request("[[fault: stall]] hi", read=0.3))
    assert text == ""
    assert error.message == "upstream read timeout"
    assert (error.transient, error.before_first_token) == (True, True)
    assert time.monotonic() - started < 5


async def test_anthropic_provider_keeps_partial_text_when_upstream_disconnects(provider):
    request = make_request("[[fault: disconnect_after: 2]] [[reply: one two three four]]")
    text, error = await stream_until_error(provider, request)
    assert text == "one two"
    assert (error.before_first_token, error.transient) == (False, True)


async def test_anthropic_provider_sends_the_key_from_its_env_var(provider, upstream):
    await collect(provider.stream(make_request("hi")))
    # this SDK version sends the key as a bearer token
    assert upstream.log[0].headers["authorization"] == "Bearer test-anthropic-key"
    assert "anthropic-version" in upstream.log[0].headers


async def test_anthropic_check_makes_a_non_streamed_round_trip(provider, upstream):
    upstream.script(reply="OK")
    assert await provider.check("claude-test") == "OK"
    assert upstream.requests[0]["max_tokens"] == 16
    assert not upstream.requests[0].get("stream")


async def test_anthropic_provider_normalises_a_refusal_to_content_filter(provider):
    _, end = await collect(provider.stream(make_request("[[finish: content_filter]] hi")))
    assert (end.finish_reason, end.raw_finish_reason) == ("content_filter", "refusal")


async def test_anthropic_provider_uses_a_rotated_key_on_the_next_request(
    provider, upstream, monkeypatch
):
    await collect(provider.stream(make_request("hi")))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "rotated-key")
    await collect(provider.stream(make_request("hi again")))
    auth = [r.headers["authorization"] for r in upstream.log]
    assert auth == ["Bearer test-anthropic-key", "Bearer rotated-key"]
