"""The model-endpoint registry: where endpoints come from, what a definition may say, and what
researchers are told when an endpoint cannot be used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from studyplatform.chat.services import arm_endpoint
from studyplatform.core.model_endpoints import (
    EndpointUnavailable,
    endpoint_get,
    endpoint_resolve,
    endpoint_usable,
    endpoints_all,
)
from studyplatform.core.models import ModelEndpoint

ROOT = Path(__file__).resolve().parents[2]


def test_simulated_is_always_registered_and_accepts_any_model_name(settings):
    settings.MODEL_ENDPOINTS = {}
    endpoint = endpoint_get("simulated")
    assert endpoint.kind == "simulated" and endpoint.allows("pilot-anything")
    assert endpoint.provider_config().requires_api_key is False


def test_the_openai_convenience_endpoint_allows_the_demo_model_and_the_listed_ones(settings):
    # given: only OPENAI_API_KEY and a model list in the environment
    settings.MODEL_ENDPOINTS = {}
    settings.OPENAI_API_KEY = "sk-test"
    settings.DEMO_MODEL = "gpt-4o-mini"
    settings.OPENAI_MODELS = ["gpt-4.1-2025-04-14"]
    # then: `openai` is the official API with that key variable and exactly those models
    endpoint = endpoint_get("openai")
    assert (endpoint.base_url, endpoint.api_key_env) == ("", "OPENAI_API_KEY")
    assert endpoint.models == ("gpt-4o-mini", "gpt-4.1-2025-04-14")
    assert not endpoint.allows("gpt-5")


def test_a_local_openai_base_url_needs_no_key(settings):
    settings.MODEL_ENDPOINTS = {}
    settings.OPENAI_BASE_URL = "http://127.0.0.1:11434/v1"
    assert endpoint_get("openai").provider_config().requires_api_key is False


@pytest.mark.django_db
def test_without_openai_settings_there_is_no_openai_endpoint(settings):
    settings.MODEL_ENDPOINTS = {}
    assert endpoint_get("openai") is None


@pytest.mark.django_db
def test_an_admin_endpoint_cannot_take_a_name_the_environment_declares():
    endpoint = ModelEndpoint(
        name="openai",
        kind="openai",
        base_url="https://elsewhere.example.org/v1",
        api_key_env="OTHER_KEY",
        allowed_models=["m"],
    )
    with pytest.raises(ValidationError) as info:
        endpoint.full_clean()
    assert info.value.message_dict["name"] == [
        "'openai' is already declared by the platform configuration"
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("allowed_models", ["*"], "list the exact model names; '*' is not accepted"),
        ("allowed_models", [], "list at least one model name protocols may use"),
        (
            "base_url",
            "https://user:pw@models.example.org/v1",
            "must not contain a user name or password (put the key in an environment variable)",
        ),
        ("base_url", "ftp://models.example.org/", "must be an http:// or https:// URL with a host"),
    ],
)
def test_an_admin_endpoint_definition_is_checked(field, value, message):
    values = {
        "name": "lab",
        "kind": "openai",
        "base_url": "https://models.example.org/v1",
        "api_key_env": "LAB_KEY",
        "allowed_models": ["m"],
        field: value,
    }
    with pytest.raises(ValidationError) as info:
        ModelEndpoint(**values).full_clean()
    assert message in info.value.message_dict[field]


@pytest.mark.django_db
def test_admin_endpoints_resolve_only_while_enabled():
    row = ModelEndpoint.objects.create(
        name="lab",
        kind="openai",
        base_url="http://gpu-1:8000/v1",
        requires_api_key=False,
        allowed_models=["llama"],
    )
    assert endpoint_get("lab").base_url == "http://gpu-1:8000/v1"
    assert "lab" in endpoints_all()
    row.enabled = False
    row.save()
    assert endpoint_get("lab") is None and "lab" not in endpoints_all()
    with pytest.raises(EndpointUnavailable, match="endpoint 'lab' is not registered"):
        endpoint_resolve(name="lab", model="llama")


@pytest.mark.django_db
def test_an_invalid_environment_endpoint_is_never_used(settings):
    settings.MODEL_ENDPOINTS = {
        "typo": {"kind": "openai", "base_url": "https://x.example.org/v1", "model": ["m"]}
    }
    assert endpoint_get("typo") is None


@pytest.mark.django_db
def test_the_launch_checklist_reason_names_the_endpoint_never_its_key_variable(
    monkeypatch, settings
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ok, why = endpoint_usable(name="openai", model="gpt-4o-2024-05-13")
    assert not ok
    assert why == (
        "Endpoint openai has no API key configured on this server; ask the platform admin"
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert endpoint_usable(name="openai", model="gpt-4o-2024-05-13") == (
        True,
        "Registered endpoint openai",
    )
    assert endpoint_usable(name="openai", model="gpt-5") == (
        False,
        "Endpoint 'openai' does not allow model 'gpt-5'",
    )


@pytest.mark.django_db
def test_an_arm_whose_endpoint_changed_kind_is_not_called(study, settings):
    # given: an arm saved on `openai`, whose operator later redefines it as simulated
    arm = study.arms.get(key="legacy")
    settings.MODEL_ENDPOINTS = {
        "openai": {"kind": "simulated", "requires_api_key": False, "models": []}
    }
    # then: the call is refused (the participant page labels arms by the saved kind)
    with pytest.raises(EndpointUnavailable, match="changed kind"):
        arm_endpoint(arm)


def test_model_endpoints_that_are_not_json_stop_the_platform_from_starting(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DEBUG": "true",
            "MODEL_ENDPOINTS": "{not json",
            "VAR_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "MODEL_ENDPOINTS is not valid JSON" in result.stderr
