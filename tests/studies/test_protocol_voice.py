"""Voice arms in the protocol: `modality: voice` with speech models from the endpoint registry;
every error names the path and the line."""

from __future__ import annotations

import pytest

from studyplatform.studies.protocol import ProtocolInvalid, parse_protocol_text, to_yaml

pytestmark = pytest.mark.django_db


def errors_of(text: str) -> list[str]:
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text(text)
    return [str(e) for e in info.value.errors]


def line_of(text: str, needle: str, after: str = "") -> int:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines[start:], start + 1) if needle in line)


@pytest.fixture
def speech_endpoint(register_endpoint):
    register_endpoint(
        "speech", base_url="http://127.0.0.1:9/v1", models=["whisper-1", "tts-1", "gpt-x"]
    )


def with_voice(doc: dict, **voice) -> dict:
    arm = doc["arms"][0]
    arm["modality"] = "voice"
    arm["voice"] = {
        "stt": {"endpoint": "speech", "name": "whisper-1"},
        "tts": {"endpoint": "speech", "name": "tts-1", "voice": "alloy"},
        **voice,
    }
    return doc


def add_checkbox(doc: dict, key: str) -> None:
    for document in doc["consent"]["documents"]:
        document["checkboxes"].append({"key": key, "label": "Keep my recordings."})


def test_a_voice_arm_with_registered_speech_models_validates(rct_doc, speech_endpoint):
    add_checkbox(rct_doc, "keep_audio")
    doc = parse_protocol_text(to_yaml(with_voice(rct_doc, keep_audio_checkbox="keep_audio")))
    assert doc["arms"][0]["voice"]["tts"]["voice"] == "alloy"
    assert "modality" not in doc["arms"][1]  # text is the default


def test_the_simulated_endpoint_serves_a_pilot_voice_arm(rct_doc):
    rct_doc["arms"][0]["modality"] = "voice"
    rct_doc["arms"][0]["voice"] = {
        "stt": {"endpoint": "simulated", "name": "pilot-stt"},
        "tts": {"endpoint": "simulated", "name": "pilot-tts", "voice": "engaging"},
    }
    parse_protocol_text(to_yaml(rct_doc))


def test_a_voice_arm_without_speech_models_is_refused(rct_doc):
    rct_doc["arms"][0]["modality"] = "voice"
    text = to_yaml(rct_doc)
    assert errors_of(text) == [
        "arms[0].modality: a voice arm needs a voice block with its stt and tts models "
        "(voice: {stt: {endpoint, name}, tts: {endpoint, name, voice}}) "
        f"(line {line_of(text, 'modality: voice')})"
    ]


def test_speech_models_on_a_text_arm_are_refused(rct_doc, speech_endpoint):
    with_voice(rct_doc)
    del rct_doc["arms"][0]["modality"]
    text = to_yaml(rct_doc)
    assert errors_of(text) == [
        "arms[0].voice: only a voice arm has speech models; add modality: voice to this arm, "
        f"or remove voice (line {line_of(text, 'voice:')})"
    ]


def test_an_unregistered_speech_endpoint_is_named_with_the_registered_ones(rct_doc):
    rct_doc["arms"][0]["modality"] = "voice"
    rct_doc["arms"][0]["voice"] = {
        "stt": {"endpoint": "nowhere", "name": "whisper-1"},
        "tts": {"endpoint": "simulated", "name": "t", "voice": "alloy"},
    }
    text = to_yaml(rct_doc)
    assert errors_of(text) == [
        "arms[0].voice.stt.endpoint: no registered endpoint called 'nowhere'; registered "
        "endpoints: openai, simulated "
        f"(line {line_of(text, 'endpoint: nowhere')})"
    ]


def test_a_speech_model_the_endpoint_does_not_allow_is_refused(rct_doc, speech_endpoint):
    with_voice(rct_doc)["arms"][0]["voice"]["tts"]["name"] = "tts-secret"
    text = to_yaml(rct_doc)
    assert errors_of(text) == [
        "arms[0].voice.tts.name: 'tts-secret' is not an allowed model on endpoint speech "
        f"(allowed: whisper-1, tts-1, gpt-x) (line {line_of(text, 'name: tts-secret')})"
    ]


def test_an_endpoint_without_a_speech_api_is_refused(rct_doc, register_endpoint, speech_endpoint):
    register_endpoint(
        "claude", kind="anthropic", base_url="http://127.0.0.1:9", models=["claude-x"]
    )
    with_voice(rct_doc)["arms"][0]["voice"]["stt"] = {"endpoint": "claude", "name": "claude-x"}
    text = to_yaml(rct_doc)
    assert errors_of(text) == [
        "arms[0].voice.stt.endpoint: endpoint claude (anthropic) has no speech API; use an "
        "OpenAI-compatible or the simulated endpoint "
        f"(line {line_of(text, 'endpoint: claude')})"
    ]


def test_a_protocol_cannot_name_a_speech_server_address(rct_doc, speech_endpoint):
    with_voice(rct_doc)["arms"][0]["voice"]["stt"]["base_url"] = "http://evil.example/v1"
    text = to_yaml(rct_doc)
    assert errors_of(text) == [
        f"arms[0].voice.stt.base_url: unknown field (line {line_of(text, 'base_url')})"
    ]


def test_the_keep_audio_checkbox_must_be_on_the_consent_documents(rct_doc, speech_endpoint):
    # the consent forms ask something else; the arm names a checkbox no one can tick
    add_checkbox(rct_doc, "keep_recordings")
    text = to_yaml(with_voice(rct_doc, keep_audio_checkbox="keep_audio"))
    assert errors_of(text) == [
        "arms[0].voice.keep_audio_checkbox: every consent document needs a checkbox with key "
        "'keep_audio': participants must agree before their recordings are kept "
        f"(line {line_of(text, 'keep_audio_checkbox')})"
    ]


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"max_seconds": 600}, "arms[0].voice.max_seconds", "must be at most 300"),
        ({"max_seconds": 1}, "arms[0].voice.max_seconds", "must be at least 5"),
    ],
)
def test_voice_limits_are_bounded(rct_doc, speech_endpoint, change, path, message):
    errors = errors_of(to_yaml(with_voice(rct_doc, **change)))
    assert len(errors) == 1 and errors[0].startswith(f"{path}: {message}")


def test_an_unknown_modality_is_refused(rct_doc):
    rct_doc["arms"][0]["modality"] = "video"
    errors = errors_of(to_yaml(rct_doc))
    assert len(errors) == 1 and errors[0].startswith("arms[0].modality: ")


def test_the_launch_checklist_checks_a_voice_arms_speech_models(rct_doc, register_endpoint):
    from django.utils import timezone

    from studyplatform.studies import launch

    # given: speech models on an endpoint whose key variable is not set on this server
    register_endpoint(
        "speech",
        base_url="http://127.0.0.1:9/v1",
        models=["whisper-1", "tts-1"],
        api_key_env="SPEECH_KEY_NOT_SET",
        requires_api_key=True,
    )
    doc = with_voice(rct_doc)
    now = timezone.now()
    checks = {
        a["key"]: launch.ModelCheck(True, now, a["model"]["endpoint"], a["model"]["name"])
        for a in doc["arms"]
    }
    env = {"OPENAI_API_KEY": "sk-chat"}
    items = {i.key: i for i in launch.launch_checklist(doc, model_checks=checks, env=env, now=now)}
    # then: the voice arm's speech item fails and says why; the text arm has none
    speech = items["speech:legacy"]
    assert not speech.ok and speech.why.startswith("stt: Endpoint speech has no API key")
    assert "tts: Endpoint speech has no API key" in speech.why
    assert "speech:current" not in items
    # when the key is set, the item passes
    env["SPEECH_KEY_NOT_SET"] = "sk-speech"
    items = {i.key: i for i in launch.launch_checklist(doc, model_checks=checks, env=env, now=now)}
    assert items["speech:legacy"].ok
