"""Fixtures for provider tests: a real fake upstream on 127.0.0.1 per test, fresh API keys."""

from collections.abc import Iterator

import pytest

from tests.support.fake_upstream import FakeUpstream


@pytest.fixture
def anyio_backend() -> str:
    # The chat app runs under uvicorn's asyncio loop; test on the same backend.
    return "asyncio"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # Keys the fake upstream accepts; each test starts from the same known environment.
    monkeypatch.setenv("OPENAI_API_KEY", "test-openai-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-anthropic-key")
