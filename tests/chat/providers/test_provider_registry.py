"""The provider registry and provider configuration: kinds, aliases, keys from env only."""

import pytest

from studyplatform.chat.providers import ProviderConfig, available_kinds, get_provider
from studyplatform.chat.providers.anthropic_provider import AnthropicProvider
from studyplatform.chat.providers.config import resolve_api_key
from studyplatform.chat.providers.openai_compat import OpenAICompatProvider
from studyplatform.chat.providers.simulated import SimulatedProvider


def test_registry_lists_every_kind_including_the_alias():
    assert available_kinds() == ["anthropic", "openai", "openai_compatible", "simulated"]


def test_registry_rejects_an_unknown_kind_listing_the_valid_ones():
    with pytest.raises(ValueError) as caught:
        get_provider("gemini", ProviderConfig())
    assert str(caught.value) == (
        "unknown provider kind 'gemini'; valid kinds: "
        "anthropic, openai, openai_compatible, simulated"
    )


def test_registry_builds_each_kind():
    config = ProviderConfig(base_url="http://127.0.0.1:9/v1")
    assert isinstance(get_provider("openai", config), OpenAICompatProvider)
    assert isinstance(get_provider("anthropic", config), AnthropicProvider)
    simulated = get_provider("simulated", config)
    assert isinstance(simulated, SimulatedProvider)
    assert simulated.is_simulated is True
    assert get_provider("openai", config).is_simulated is False


def test_registry_alias_resolves_to_the_same_shared_openai_provider():
    config = ProviderConfig(base_url="http://127.0.0.1:9/v1", api_key_env="ARM_KEY")
    assert get_provider("openai_compatible", config) is get_provider("openai", config)
    other = ProviderConfig(base_url="http://127.0.0.1:10/v1", api_key_env="ARM_KEY")
    assert get_provider("openai", other) is not get_provider("openai", config)


def test_config_refuses_a_literal_api_key():
    with pytest.raises(ValueError) as caught:
        ProviderConfig(api_key="sk-secret")
    assert str(caught.value) == (
        "ProviderConfig does not accept api_key: put the key in an environment variable "
        "and set api_key_env to its name"
    )


def test_config_repr_names_the_variable_not_the_key(monkeypatch):
    monkeypatch.setenv("ARM_KEY", "sk-very-secret")
    config = ProviderConfig(api_key_env="ARM_KEY")
    assert "sk-very-secret" not in repr(config)
    assert "ARM_KEY" in repr(config)


def test_api_key_defaults_to_the_vendor_variable_and_is_read_on_each_call(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "key-one")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "key-a")
    config = ProviderConfig()
    assert resolve_api_key(config, "openai") == "key-one"
    assert resolve_api_key(config, "anthropic") == "key-a"
    monkeypatch.setenv("OPENAI_API_KEY", "key-two")
    assert resolve_api_key(config, "openai") == "key-two"


def test_a_local_endpoint_without_a_key_gets_a_placeholder(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = ProviderConfig(base_url="http://127.0.0.1:11434/v1", requires_api_key=False)
    assert resolve_api_key(config, "openai") == "not-needed"
