"""The shipped example examples/factorial-voice-rct.yaml: Fang et al. (2025)'s 3 x 3 design."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from studyplatform.studies.models import Arm
from studyplatform.studies.protocol import parse_protocol_text
from studyplatform.studies.protocol.voice import arm_voice
from studyplatform.studies.services import study_create_from_protocol, study_transition

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "factorial-voice-rct.yaml"


@pytest.fixture
def doc() -> dict:
    return parse_protocol_text(EXAMPLE.read_text())


def test_the_example_validates_into_nine_arms_one_per_cell(doc):
    assert [f["key"] for f in doc["factors"]] == ["modality", "task"]
    cells = {(a["levels"]["modality"], a["levels"]["task"]) for a in doc["arms"]}
    assert len(doc["arms"]) == 9 and len(cells) == 9
    assert {m for m, _ in cells} == {"text", "neutral_voice", "engaging_voice"}
    assert {t for _, t in cells} == {"open", "personal", "impersonal"}
    # each voice level's prompt fragment reaches only its own arms
    by_key = {a["key"]: a for a in doc["arms"]}
    assert "emotionally expressive" in by_key["engaging_voice_personal"]["system_prompt"]
    assert "emotionally expressive" not in by_key["text_personal"]["system_prompt"]
    assert doc["allocation"]["block_sizes"] == [9, 18]
    assert doc["analysis"]["factorial"] == {"factors": ["modality", "task"], "interaction": True}


def test_the_generated_voice_arms_speak_and_every_arm_names_its_task_list(doc):
    by_key = {a["key"]: a for a in doc["arms"]}
    lists = {"open": "open_ended", "personal": "personal", "impersonal": "non_personal"}
    for arm in doc["arms"]:
        levels = arm["levels"]
        # the task level's `arm: {tasks: ...}` reaches all its arms, whatever their modality
        assert arm["tasks"] == lists[levels["task"]], arm["key"]
        if levels["modality"] == "text":
            assert arm.get("modality", "text") == "text" and "voice" not in arm, arm["key"]
        else:
            assert arm["modality"] == "voice", arm["key"]
            assert arm["voice"]["stt"]["endpoint"] == "simulated"
            assert arm["voice"]["keep_audio_checkbox"] == "keep_audio"
    assert by_key["neutral_voice_open"]["voice"]["tts"]["voice"] == "neutral"
    assert by_key["engaging_voice_impersonal"]["voice"]["tts"]["voice"] == "engaging"
    # the checkbox the voice arms name is optional on every consent document
    for document in doc["consent"]["documents"]:
        boxes = {c["key"]: c for c in document["checkboxes"]}
        assert boxes["keep_audio"]["required"] is False, document["language"]
    task_lists = {t["key"]: t for t in doc["tasks"]}
    assert set(task_lists) == set(lists.values())
    assert len(task_lists["personal"]["items"]) == len(task_lists["non_personal"]["items"]) == 7
    assert all(set(i["text"]) == {"en", "pt-br"} for t in doc["tasks"] for i in t["items"])


def test_the_example_asks_five_minutes_a_day_nudges_and_completes_at_24_of_28(doc):
    requirements = doc["requirements"]
    assert requirements["daily"] == {"active_minutes": 5}
    assert requirements["nudge"]["channels"] == ["in_app", "email"]
    assert requirements["nudge"]["local_time"] == "19:00"
    assert set(requirements["nudge"]["text"]) == {"en", "pt-br"}
    assert requirements["completion"] == {"min_days": 24, "of_days": 28}
    assert doc["study"]["duration_days"] == 28
    assert "cc=" in doc["study"]["recruitment"]["completion_url"]


def test_the_example_uses_shipped_instruments_and_marked_placeholders(doc):
    schedule = {e["key"]: e["instruments"] for e in doc["surveys"]["schedule"]}
    assert {"ucla3", "lsns6"} <= set(schedule["pre"]) and schedule["pre"] == schedule["post"]
    assert schedule["daily_checkin"] == ["ema_loneliness"]
    for custom in doc["surveys"]["instruments"]:
        assert "PLACEHOLDER" in custom["title"]["en"]
        assert all("PLACEHOLDER" in item["text"]["en"] for item in custom["items"])
        assert "licence" in custom["licence"]["note"]


def test_the_cli_validates_the_example():
    env = {**os.environ, "DEBUG": "true"}
    result = subprocess.run(
        [sys.executable, "manage.py", "protocol", "validate", str(EXAMPLE.relative_to(ROOT))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "examples/factorial-voice-rct.yaml: valid"


@pytest.mark.django_db
def test_the_example_goes_to_pilot_with_simulated_models(doc, owner):
    study = study_create_from_protocol(doc=doc, author=owner)
    study = study_transition(study=study, to="piloting", actor=owner)
    assert study.status == "piloting"
    arms = Arm.objects.filter(study=study, is_active=True)
    assert arms.count() == 9 and {a.provider for a in arms} == {"simulated"}
    # the saved version's arms (generated from the factors) keep their voice blocks
    assert {a.key for a in arms if arm_voice(study.protocol, a.key)} == {
        f"{m}_{t}"
        for m in ("neutral_voice", "engaging_voice")
        for t in ("open", "personal", "impersonal")
    }
    assert (
        study.title_in("pt-br") == "Conversando com um assistente de IA todos os dias (4 semanas)"
    )
