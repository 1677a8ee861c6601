"""The simulated (pilot) provider: deterministic, labelled, exact counts, no network."""

import pytest

from studyplatform.chat.providers import ChatRequest, ProviderConfig, TextDelta, collect
from studyplatform.chat.providers.simulated import PILOT_LABEL, SimulatedProvider

pytestmark = pytest.mark.anyio


def make_request(text="I slept badly and feel tired today", seed=1, **params):
    return ChatRequest(
        model="pilot-arm",
        messages=[{"role": "user", "content": text}],
        system="Be supportive.",
        params={"seed": seed, **params},
    )


def make_provider():
    return SimulatedProvider(ProviderConfig(simulated_delay_s=0.0))


async def test_simulated_provider_is_deterministic_for_the_same_input_and_seed():
    first = await collect(make_provider().stream(make_request()))
    second = await collect(make_provider().stream(make_request()))
    assert first == second


async def test_simulated_provider_reply_depends_on_the_seed():
    replies = {(await collect(make_provider().stream(make_request(seed=s))))[0] for s in range(8)}
    assert len(replies) > 1


async def test_simulated_provider_is_labelled_as_a_pilot_and_echoes_the_message(monkeypatch):
    # given: no API keys at all, to show nothing is fetched from anywhere
    monkeypatch.delenv("OPENAI_API_KEY")
    provider = make_provider()
    # when
    text, end = await collect(provider.stream(make_request()))
    # then
    assert provider.is_simulated is True
    assert text.startswith(PILOT_LABEL)
    assert '"I slept badly and feel tired today"' in text
    assert end.model_reported == "simulated-pilot-arm"
    assert end.usage_estimated is False


async def test_simulated_provider_counts_tokens_exactly_one_per_streamed_word():
    events = [e async for e in make_provider().stream(make_request())]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    end = events[-1]
    assert end.completion_tokens == len(deltas)
    # system "Be supportive." (2 words) + the 7-word message
    assert end.prompt_tokens == 2 + 7
    assert all(len(d.text.split()) == 1 for d in deltas)


async def test_simulated_provider_truncates_at_max_tokens_with_finish_length():
    text, end = await collect(make_provider().stream(make_request(max_tokens=4)))
    assert (end.finish_reason, end.completion_tokens) == ("length", 4)
    assert len(text.split()) == 4


async def test_simulated_provider_check_needs_no_upstream():
    assert await make_provider().check("pilot-arm") == "OK (simulated-pilot-arm, pilot mode)"
