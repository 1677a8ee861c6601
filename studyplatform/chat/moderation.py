"""The optional second safety layer: a provider moderation endpoint (OpenAI-compatible).

When a protocol sets `safety.detector.moderation: true`, every participant message is also sent
to the moderation endpoint in the background (chat queue) after it is stored; self-harm
categories raise the same SafetyAlert as the lexicon detector. The lexicon runs first and
synchronously, so the participant sees crisis resources at once either way.
"""

from __future__ import annotations

import os

import openai
from django.conf import settings

from .models import Message, SafetyAlert
from .safety_alerts import excerpt_around, safety_alert_raise

SELF_HARM = {
    "self-harm/intent": "high",
    "self-harm/instructions": "high",
    "self-harm": "medium",
}


def moderation_enabled(study) -> bool:
    return bool(study.protocol.get("safety", {}).get("detector", {}).get("moderation"))


def _client() -> openai.OpenAI:
    key = os.environ.get(settings.MODERATION_API_KEY_ENV) or "unused"
    return openai.OpenAI(
        api_key=key,
        base_url=settings.MODERATION_BASE_URL or settings.OPENAI_BASE_URL or None,
        timeout=settings.LLM_READ_TIMEOUT_S,
        max_retries=2,
    )


def moderate_message(message: Message) -> SafetyAlert | None:
    """Screen one stored participant message; returns the alert raised, if any."""
    if SafetyAlert.objects.filter(message=message).exists():
        return None  # the lexicon already raised one for this message
    result = _client().moderations.create(model=settings.MODERATION_MODEL, input=message.content)
    outcome = result.results[0]
    categories = outcome.categories.model_dump(by_alias=True)
    hits = [name for name in SELF_HARM if categories.get(name)]
    if not outcome.flagged or not hits:
        return None
    worst = min(hits, key=lambda name: ("high", "medium").index(SELF_HARM[name]))
    return safety_alert_raise(
        participant=message.participant,
        source="chat",
        severity=SELF_HARM[worst],
        category=worst.replace("/", "_").replace("-", "_"),
        excerpt=excerpt_around(message.content, 0, min(len(message.content), 80)),
        detector=f"moderation:{settings.MODERATION_MODEL}",
        message=message,
    )
