"""Provider configuration: reading an arm's API key from the environment at call time.

ProviderConfig and the rule for which variables may hold a key live in
studyplatform/core/provider_config.py (the endpoint registry in core needs them too).

API keys never appear in a config, a protocol version or the database: a config only *names*
an environment variable (api_key_env), and the key is read from the environment each time a
request is made, so rotating a key needs no change to a study protocol.
"""

from __future__ import annotations

import os

from studyplatform.core.provider_config import ProviderConfig, key_env_refusal

from .base import ProviderError

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

# Sent when an endpoint needs no key (a local vLLM or Ollama) but the SDK insists on one.
PLACEHOLDER_KEY = "not-needed"


def resolve_api_key(config: ProviderConfig, kind: str) -> str:
    """Read the API key from the environment now (never cached in the config).

    Raises a non-transient ProviderError naming the variable when it is unset and required.
    """
    env_name = config.api_key_env or DEFAULT_KEY_ENV.get(kind, "")
    if env_name and key_env_refusal(env_name):
        # Defence in depth: the registry refuses such endpoints, but never send one anyway.
        raise ProviderError(
            f"refusing to send {env_name}: {key_env_refusal(env_name)}", transient=False
        )
    value = os.environ.get(env_name, "") if env_name else ""
    if value:
        return value
    if not config.requires_api_key:
        return PLACEHOLDER_KEY
    raise ProviderError(
        f"environment variable {env_name or '(none configured)'} is not set; "
        f"it must hold the API key for this {kind} provider",
        transient=False,
    )
