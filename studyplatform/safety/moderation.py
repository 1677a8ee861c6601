"""The optional second safety layer: a provider moderation endpoint (OpenAI-compatible).

When a protocol sets `safety.detector.moderation: true`, every participant message is also sent
to the registered model endpoint named by MODERATION_ENDPOINT, in the background (chat queue)
after it is stored; self-harm categories raise the same SafetyAlert as the lexicon detector.
The lexicon runs first and synchronously, so the participant sees crisis resources at once
either way.
"""

from __future__ import annotations

import logging
from typing import Any

import openai
from django.conf import settings

from studyplatform.core.model_endpoints import EndpointUnavailable, endpoint_resolve
from studyplatform.core.provider_config import OPENAI_BASE_URL, ApiKeyUnavailable, api_key_read

from .models import SafetyAlert
from .services import excerpt_around, safety_alert_raise

logger = logging.getLogger(__name__)

SELF_HARM = {
    "self-harm/intent": "high",
    "self-harm/instructions": "high",
    "self-harm": "medium",
}


def moderation_enabled(study) -> bool:
    return bool(study.protocol.get("safety", {}).get("detector", {}).get("moderation"))


def _client() -> openai.OpenAI:
    """A client for the registered endpoint named by MODERATION_ENDPOINT (EndpointUnavailable
    when it is not registered or is not OpenAI-compatible)."""
    endpoint = endpoint_resolve(name=settings.MODERATION_ENDPOINT, model=None)
    if endpoint.kind != "openai":
        raise EndpointUnavailable(f"endpoint {endpoint.name!r} is not OpenAI-compatible")
    config = endpoint.provider_config()
    try:
        key = api_key_read(config, endpoint.kind)
    except ApiKeyUnavailable as exc:
        raise EndpointUnavailable(str(exc)) from None
    return openai.OpenAI(
        api_key=key,
        base_url=config.base_url or OPENAI_BASE_URL,
        timeout=settings.LLM_READ_TIMEOUT_S,
        max_retries=2,
    )


def moderate_message(message: Any) -> SafetyAlert | None:
    """Screen one stored participant message (a chat Message from the registered message
    source, with its participant loaded); returns the alert raised, if any.

    No moderation endpoint registered: logged and skipped (the lexicon detector already ran
    synchronously and is the primary safety layer).
    """
    if SafetyAlert.objects.filter(message=message).exists():
        return None  # the lexicon already raised one for this message
    try:
        client = _client()
    except EndpointUnavailable as exc:
        logger.error("moderation skipped for message %s: %s", message.pk, exc)
        return None
    result = client.moderations.create(model=settings.MODERATION_MODEL, input=message.content)
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
