"""Meaning checks for voice arms (`modality: voice` with a `voice` block), run after the schema.

The schema checks the shape; this checks what it cannot: a voice arm has its speech models, a
text arm carries none, the speech models are on registered endpoints that allow them (the same
trust boundary as chat models: a protocol names an endpoint and a model, never a URL or a key),
the endpoint speaks an audio API, and the checkbox that allows keeping audio is on every consent
document (or some participants could never be asked).
"""

from __future__ import annotations

from typing import Any

# Endpoint kinds with an audio API the platform can call (docs/providers.md, Audio).
AUDIO_KINDS = ("openai", "simulated")
DEFAULT_MAX_SECONDS = 60


def _consent_keys(doc: dict) -> list[set[str]]:
    documents = (doc.get("consent") or {}).get("documents") or []
    return [{c.get("key") for c in d.get("checkboxes") or []} for d in documents]


def _model_errors(part: dict, path: tuple) -> list[tuple[tuple, str]]:
    from studyplatform.core.model_endpoints import endpoint_get, registered_names

    name, model = part.get("endpoint", ""), part.get("name", "")
    endpoint = endpoint_get(name)
    if endpoint is None:
        return [
            (
                (*path, "endpoint"),
                f"no registered endpoint called {name!r}; registered endpoints: "
                + ", ".join(registered_names()),
            )
        ]
    if endpoint.kind not in AUDIO_KINDS:
        return [
            (
                (*path, "endpoint"),
                f"endpoint {name} ({endpoint.kind}) has no speech API; use an OpenAI-compatible "
                "or the simulated endpoint",
            )
        ]
    if not endpoint.allows(model):
        return [
            (
                (*path, "name"),
                f"{model!r} is not an allowed model on endpoint {name} "
                f"(allowed: {endpoint.models_text()})",
            )
        ]
    return []


def voice_errors(doc: dict[str, Any]) -> list:
    """ProtocolErrors (without lines; the caller adds them) for every voice-arm problem."""
    from .validate import ProtocolError

    errors: list[tuple[tuple, str]] = []
    consent_keys = _consent_keys(doc)
    for i, arm in enumerate(doc.get("arms") or []):
        base = ("arms", i)
        voice = arm.get("voice")
        if arm.get("modality", "text") != "voice":
            if voice is not None:
                errors.append(
                    (
                        (*base, "voice"),
                        "only a voice arm has speech models; add modality: voice to this arm, "
                        "or remove voice",
                    )
                )
            continue
        if voice is None:
            errors.append(
                (
                    (*base, "modality"),
                    "a voice arm needs a voice block with its stt and tts models "
                    "(voice: {stt: {endpoint, name}, tts: {endpoint, name, voice}})",
                )
            )
            continue
        errors += _model_errors(voice["stt"], (*base, "voice", "stt"))
        errors += _model_errors(voice["tts"], (*base, "voice", "tts"))
        checkbox = voice.get("keep_audio_checkbox")
        if checkbox and any(checkbox not in keys for keys in consent_keys):
            errors.append(
                (
                    (*base, "voice", "keep_audio_checkbox"),
                    f"every consent document needs a checkbox with key {checkbox!r}: "
                    "participants must agree before their recordings are kept",
                )
            )
    return [ProtocolError(parts, message) for parts, message in errors]


def arm_voice(protocol: dict[str, Any], arm_key: str) -> dict[str, Any] | None:
    """The voice block of arm `arm_key` in a stored protocol, or None for a text arm."""
    for arm in (protocol or {}).get("arms") or []:
        if arm.get("key") == arm_key:
            if arm.get("modality") == "voice" and isinstance(arm.get("voice"), dict):
                return arm["voice"]
            return None
    return None
