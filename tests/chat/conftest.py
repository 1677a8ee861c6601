"""Chat fixtures: a study whose arms point at a real loopback OpenAI-compatible server."""

from __future__ import annotations

import copy
import json

import pytest
from asgiref.sync import async_to_sync

from tests.factories import launch_study
from tests.support.fake_upstream import FakeUpstream


@pytest.fixture
def upstream():
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def loopback_endpoint(upstream, register_endpoint) -> str:
    """The fake upstream, registered as the platform endpoint `loopback` (keyless, like vLLM)."""
    register_endpoint(
        "loopback", base_url=upstream.base_url, models=["gpt-test-legacy", "gpt-test-current"]
    )
    return "loopback"


@pytest.fixture
def chat_study(loopback_endpoint, owner, rct_doc):
    from studyplatform.studies.services import study_create_from_protocol

    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "chat-study"
    for arm in doc["arms"]:
        arm["model"] = {
            "endpoint": loopback_endpoint,
            "name": f"gpt-test-{arm['key']}",
            "context_tokens": 4000,
        }
    study = study_create_from_protocol(doc=doc, author=owner)
    study = launch_study(study, owner)
    return study


def parse_sse(frames: list[str]) -> list[tuple[str, dict]]:
    events = []
    for frame in frames:
        event = data = None
        for line in frame.strip().splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        events.append((event, data))
    return events


def run_reply(user_message_id: int, *, claimed: bool = True, on_delta=None):
    """Drive the real reply stream to the end; returns the parsed SSE events.

    async_to_sync keeps sync_to_async database work on this test's thread and transaction.
    """
    from studyplatform.chat.streaming import reply_events

    async def collect():
        frames = []
        async for frame in reply_events(user_message_id, attempt_claimed=claimed):
            frames.append(frame)
            if on_delta and frame.startswith("event: delta"):
                await on_delta(len(frames))
        return frames

    return parse_sse(async_to_sync(collect)())
