"""How to reach a model backend, and which environment variables may never hold its key.

Shared by the model-endpoint registry (core/model_endpoints.py, which studies use to check a
protocol's arms) and the chat providers that make the calls; it lives in core so that neither
core nor studies has to import the chat app (tests/core/test_import_layers.py).

API keys never appear in a config, a protocol version or the database: a config only *names*
an environment variable (api_key_env), and the key is read from the environment each time a
request is made (`api_key_read` below), so rotating a key needs no change to a study protocol.
Reading the key lives here, not in chat, because the safety app's moderation client needs it too
and sits below chat.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# The official OpenAI API root, used when an OpenAI-compatible endpoint names no base URL.
OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# Sent when an endpoint needs no key (a local vLLM or Ollama) but the SDK insists on one.
PLACEHOLDER_KEY = "not-needed"

# The platform's own secrets. A model endpoint's key variable may never be one of these: the key
# is sent as a bearer token to the endpoint, so naming SECRET_KEY here would hand the server's
# signing key to whoever runs that endpoint. Checked when an endpoint is registered and again
# on every call (api_key_read), so a mistake in one place cannot leak a secret.
PLATFORM_SECRET_ENV = frozenset(
    {
        "SECRET_KEY",
        "DJANGO_SECRET_KEY",
        "FIELD_ENCRYPTION_KEY",
        "FIELD_ENCRYPTION_KEYS",
        "DATABASE_URL",
        "EMAIL_URL",
        "EMAIL_HOST_PASSWORD",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "DEMO_PASSWORD",
    }
)
# Names that look like a platform secret or a connection string (which embeds a password).
_SECRET_LOOKING = re.compile(
    r"SECRET|PASSWORD|PASSWD|ENCRYPTION|DATABASE|SESSION|COOKIE|CSRF|SIGNING|_URL$|_DSN$"
)
KEY_ENV_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]{0,99}$")


def key_env_refusal(name: str, extra_forbidden: frozenset[str] = frozenset()) -> str | None:
    """Why `name` may not hold a model endpoint's key, or None when it may."""
    if not KEY_ENV_PATTERN.match(name or ""):
        return "must be an environment variable name in capitals (A-Z, 0-9, _)"
    if name in PLATFORM_SECRET_ENV or name in extra_forbidden or _SECRET_LOOKING.search(name):
        return f"{name} holds a platform secret and can never be sent to a model endpoint"
    return None


@dataclass(frozen=True)
class ProviderConfig:
    """How to reach a model backend.

    base_url: the API root (None means the vendor's official endpoint). For OpenAI-compatible
    servers it ends in /v1 (e.g. http://127.0.0.1:8000/v1); for Anthropic it is the host root.
    api_key: must stay None; present only so that a key pasted into a config fails loudly.
    api_key_env: the environment variable holding the key (default OPENAI_API_KEY or
    ANTHROPIC_API_KEY). requires_api_key: False for local servers that accept any key.
    simulated_delay_s: pause between words of the simulated provider.
    """

    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    requires_api_key: bool = True
    simulated_delay_s: float = 0.02

    def __post_init__(self) -> None:
        if self.api_key is not None:
            # Refuse rather than ignore: a key in a config would end up in protocol versions,
            # exports and logs.
            raise ValueError(
                "ProviderConfig does not accept api_key: put the key in an environment "
                "variable and set api_key_env to its name"
            )

    def __repr__(self) -> str:
        return (
            f"ProviderConfig(base_url={self.base_url!r}, api_key_env={self.api_key_env!r}, "
            f"requires_api_key={self.requires_api_key})"
        )


class ApiKeyUnavailable(Exception):
    """The key cannot be sent: its variable is unset (and required) or names a platform secret.
    Never transient: retrying does not set an environment variable."""


def api_key_read(config: ProviderConfig, kind: str) -> str:
    """Read the API key from the environment now (never cached in the config).

    Raises ApiKeyUnavailable naming the variable when it is unset and required.
    """
    env_name = config.api_key_env or DEFAULT_KEY_ENV.get(kind, "")
    if env_name and key_env_refusal(env_name):
        # Defence in depth: the registry refuses such endpoints, but never send one anyway.
        raise ApiKeyUnavailable(f"refusing to send {env_name}: {key_env_refusal(env_name)}")
    value = os.environ.get(env_name, "") if env_name else ""
    if value:
        return value
    if not config.requires_api_key:
        return PLACEHOLDER_KEY
    raise ApiKeyUnavailable(
        f"environment variable {env_name or '(none configured)'} is not set; "
        f"it must hold the API key for this {kind} provider"
    )
