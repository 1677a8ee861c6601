"""A deterministic stand-in model for piloting a protocol without calling (or paying for) an LLM.

The reply is clearly labelled as a pilot response, echoes a short summary of the participant's
last message and adds a couple of neutral follow-up sentences chosen by a seeded generator, so
the same conversation, model and seed always give the same reply. It streams word by word with
a small configurable pause, so the chat UI, message log and safety checks behave as in a real
study. Token counts are exact for its own "tokeniser": one token per whitespace-separated word.
is_simulated is always True so the participant UI can show "pilot mode".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import AsyncIterator

from .base import ChatRequest, Provider, StreamEnd, StreamEvent, TextDelta
from .config import ProviderConfig

PILOT_LABEL = "[Pilot mode: simulated reply, no language model was used.]"
SIMULATED_FINGERPRINT = "simulated-v1"

_FOLLOW_UPS = (
    "Thank you for telling me about this.",
    "Could you say a little more about how that felt?",
    "What happened after that?",
    "That sounds like it matters to you.",
    "How has your day been otherwise?",
    "Is there anything else on your mind today?",
    "I am only a placeholder used while this study is being tested.",
    "What would you like to talk about next?",
)

_SUMMARY_WORDS = 12


def _words(text: str) -> list[str]:
    return text.split()


def _digest(request: ChatRequest) -> str:
    # sha256 rather than hash(): Python's str hash is salted per process, and the reply must be
    # the same across processes and machines.
    payload = json.dumps(
        [request.model, request.system, request.messages, request.params.get("seed")],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def simulated_reply(request: ChatRequest) -> str:
    """The full reply text the simulated provider streams for `request`."""
    last_user = next(
        (str(m.get("content") or "") for m in reversed(request.messages) if m["role"] == "user"),
        "",
    )
    words = _words(last_user)
    summary = " ".join(words[:_SUMMARY_WORDS]) + (" ..." if len(words) > _SUMMARY_WORDS else "")
    rng = random.Random(_digest(request))
    follow_ups = rng.sample(_FOLLOW_UPS, 2)
    echo = (
        f'You wrote {len(words)} words, beginning: "{summary}".' if words else "You wrote nothing."
    )
    return " ".join([PILOT_LABEL, echo, *follow_ups])


class SimulatedProvider(Provider):
    """Streams simulated_reply(request) word by word; never touches the network."""

    name = "simulated"
    is_simulated = True

    def __init__(self, config: ProviderConfig | None = None) -> None:
        self.config = config or ProviderConfig()
        self.delay_s = self.config.simulated_delay_s

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        words = _words(simulated_reply(request))
        max_tokens = request.params.get("max_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
            words, finish = words[:max_tokens], "length"
        for index, word in enumerate(words):
            if self.delay_s > 0:
                await asyncio.sleep(self.delay_s)
            yield TextDelta(word if index == 0 else " " + word)
        prompt_words = len(_words(request.system or "")) + sum(
            len(_words(str(m.get("content") or ""))) for m in request.messages
        )
        yield StreamEnd(
            finish_reason=finish,
            model_reported=f"simulated-{request.model}",
            system_fingerprint=SIMULATED_FINGERPRINT,
            response_id=f"sim-{_digest(request)[:24]}",
            prompt_tokens=prompt_words,
            completion_tokens=len(words),
            usage_estimated=False,
            raw_finish_reason=finish,
        )

    async def check(self, model: str) -> str:
        """Always succeeds: there is no upstream to reach."""
        return f"OK (simulated-{model}, pilot mode)"
