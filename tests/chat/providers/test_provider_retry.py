"""stream_with_retry: retries transient failures before the first token only, within a deadline."""

import random
import time

import pytest

from studyplatform.chat.providers import (
    ChatRequest,
    ProviderConfig,
    ProviderError,
    TextDelta,
    Timeouts,
    collect,
    stream_with_retry,
)
from studyplatform.chat.providers.openai_compat import OpenAICompatProvider
from studyplatform.chat.providers.retry import backoff_delay

pytestmark = pytest.mark.anyio


@pytest.fixture
async def provider(upstream):
    async with OpenAICompatProvider(ProviderConfig(base_url=upstream.base_url)) as made:
        yield made


def make_request(text, read=5.0):
    return ChatRequest(
        model="gpt-test",
        messages=[{"role": "user", "content": text}],
        timeout=Timeouts(connect=2, read=read, total_deadline_before_first_token=10),
    )


def retrying(provider, request, **options):
    options = {"deadline_s": 5.0, "base_delay_s": 0.01, "max_attempts": 3, **options}
    return stream_with_retry(provider, request, rng=random.Random(1), **options)


async def test_retry_retries_a_429_twice_then_succeeds(provider, upstream):
    # given: an upstream that rate-limits the first two identical requests
    request = make_request("[[fault: 429 times: 2]] [[reply: finally here]]")
    # when
    text, end = await collect(retrying(provider, request))
    # then: the third attempt's reply comes through and reports the attempts
    assert text == "finally here"
    assert end.attempts == 3
    assert len(upstream.requests) == 3


async def test_retry_gives_up_after_max_attempts(provider, upstream):
    with pytest.raises(ProviderError) as caught:
        await collect(retrying(provider, make_request("[[fault: 500 times: 5]] hi")))
    assert caught.value.status == 500
    assert len(upstream.requests) == 3


async def test_retry_never_retries_after_the_first_token(provider, upstream):
    # given: an upstream that breaks the first stream after two chunks, then would succeed
    upstream.script(fault="disconnect_after: 2")
    request = make_request("[[reply: one two three four]]")
    parts = []
    # when
    with pytest.raises(ProviderError) as caught:
        async for event in retrying(provider, request, max_attempts=5):
            if isinstance(event, TextDelta):
                parts.append(event.text)
    # then: the partial text stays, the error says so, and no second request was made
    assert "".join(parts) == "one two"
    assert caught.value.before_first_token is False
    assert len(upstream.requests) == 1


async def test_retry_does_not_retry_permanent_errors(provider, upstream):
    upstream.script(fault="400")
    with pytest.raises(ProviderError) as caught:
        await collect(retrying(provider, make_request("hi"), max_attempts=5))
    assert caught.value.status == 400
    assert len(upstream.requests) == 1


async def test_retry_stops_when_the_next_backoff_would_pass_the_deadline(provider, upstream):
    # given: a failing upstream, 10 allowed attempts, but backoff 0.2, 0.4, ... s and 0.5 s budget
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await collect(
            retrying(
                provider,
                make_request("[[fault: 503]] hi"),
                deadline_s=0.5,
                base_delay_s=0.2,
                max_attempts=10,
            )
        )
    # then: it gave up early with the upstream's error, well before 10 attempts
    assert caught.value.status == 503
    assert 1 < len(upstream.requests) < 4
    assert time.monotonic() - started < 1.0


async def test_retry_deadline_cuts_a_stalled_attempt(provider, upstream):
    # given: a stalled stream and a read timeout much longer than the overall deadline
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await collect(
            retrying(provider, make_request("[[fault: stall]] hi", read=30), deadline_s=0.4)
        )
    assert caught.value.transient is True
    assert caught.value.before_first_token is True
    assert time.monotonic() - started < 2.0


async def test_retry_honours_retry_after_beyond_the_deadline_by_giving_up(provider, upstream):
    upstream.script(fault="429", retry_after="30")
    with pytest.raises(ProviderError) as caught:
        await collect(retrying(provider, make_request("hi"), deadline_s=2.0))
    assert caught.value.retry_after == 30.0
    assert len(upstream.requests) == 1


def test_backoff_delay_doubles_with_jitter_between_half_and_full_step():
    rng = random.Random(42)
    for attempt, step in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)]:
        delays = [backoff_delay(attempt, 0.5, rng) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1
