"""The model-endpoint registry: which model servers the platform may call, and with which key.

This is a trust boundary (DESIGN.md, "Model endpoints"). A protocol names an endpoint and a
model; only the platform operator decides where that endpoint is and which environment variable
holds its key. Anything that calls a model (chat arms, the launch page's "Test models", the
moderation client, later classifier judges and voice models) resolves its endpoint here, so a
researcher account can never point the server at an address of its choosing, nor make it send
one of the platform's own secrets as a bearer token.

Sources, looked up by name in this order (the first wins):
  1. `simulated`: always present; calls nothing.
  2. settings.MODEL_ENDPOINTS: declared by the operator in the environment (MODEL_ENDPOINTS as
     JSON, or MODEL_ENDPOINTS_FILE naming a JSON file).
  3. `openai` and `anthropic` conveniences from OPENAI_BASE_URL/OPENAI_API_KEY and
     ANTHROPIC_BASE_URL/ANTHROPIC_API_KEY, unless MODEL_ENDPOINTS declares the same name.
  4. ModelEndpoint rows a platform admin registered in the Django admin (enabled ones). They may
     not reuse a name from 1-3.

Messages in EndpointUnavailable and in the validation errors are shown to researchers: they name
the endpoint and the model, never a URL, a host, a port or an environment variable.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _

from .provider_config import (
    PLATFORM_SECRET_ENV,
    ProviderConfig,
    key_env_refusal,
)

logger = logging.getLogger(__name__)

KINDS = ("openai", "anthropic", "simulated")
SIMULATED = "simulated"
SPEC_FIELDS = {"kind", "base_url", "api_key_env", "requires_api_key", "models"}
MAX_MODEL_NAME = 200
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Endpoint:
    """One registered endpoint. `models` are the exact model names protocols may use on it;
    the simulated kind calls nothing, so any model name (a label) is allowed there."""

    name: str
    kind: str
    base_url: str = ""
    api_key_env: str = ""
    requires_api_key: bool = True
    models: tuple[str, ...] = ()
    source: str = "settings"  # builtin | settings | admin

    @property
    def is_simulated(self) -> bool:
        return self.kind == SIMULATED

    def allows(self, model: str) -> bool:
        return self.is_simulated or model in self.models

    def models_text(self) -> str:
        if self.is_simulated:
            return "any name"
        return ", ".join(self.models) or "none"

    def provider_config(self) -> ProviderConfig:
        return ProviderConfig(
            base_url=self.base_url or None,
            api_key_env=self.api_key_env or None,
            requires_api_key=self.requires_api_key and not self.is_simulated,
        )


class EndpointUnavailable(Exception):
    """A model call that may not go out. str() is safe to show a researcher."""


def forbidden_key_envs() -> frozenset[str]:
    """The platform's secrets: the built-in list plus PLATFORM_SECRET_ENV_VARS from settings."""
    return PLATFORM_SECRET_ENV | frozenset(getattr(settings, "PLATFORM_SECRET_ENV_VARS", ()))


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.username or parts.password:
        return "must not contain a user name or password (put the key in an environment variable)"
    if parts.query or parts.fragment:
        return "must not contain a query string or fragment"
    return None


def endpoint_spec_errors(
    *,
    name: str,
    kind: str,
    base_url: str = "",
    api_key_env: str = "",
    requires_api_key: bool = True,
    models: Any = (),
    from_admin: bool = False,
) -> dict[str, list[str]]:
    """Problems with an endpoint definition, by field (empty when it is acceptable)."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if not NAME_PATTERN.match(name or ""):
        add("name", "must be 1-40 lowercase letters, digits, hyphens or underscores")
    if from_admin and name in _configured_endpoints():
        add("name", f"{name!r} is already declared by the platform configuration")
    if kind not in KINDS:
        add("kind", "must be one of: " + ", ".join(KINDS))
    if kind == SIMULATED:
        if base_url:
            add("base_url", "a simulated endpoint calls no server; leave it empty")
        if api_key_env:
            add("api_key_env", "a simulated endpoint needs no key; leave it empty")
    else:
        if base_url and (problem := _url_problem(base_url)):
            add("base_url", problem)
        if api_key_env:
            refusal = key_env_refusal(api_key_env, forbidden_key_envs())
            if refusal:
                add("api_key_env", refusal)
        elif requires_api_key:
            add("api_key_env", "name the variable holding the key, or mark the endpoint keyless")
    if not isinstance(requires_api_key, bool):
        add("requires_api_key", "must be true or false")
    if not isinstance(models, (list, tuple)) or not all(
        isinstance(m, str) and m.strip() and len(m) <= MAX_MODEL_NAME for m in models
    ):
        add("models", "must be a list of model names (text, at most 200 characters each)")
    elif "*" in models:
        add("models", "list the exact model names; '*' is not accepted")
    elif kind in KINDS and kind != SIMULATED and not models:
        add("models", "list at least one model name protocols may use")
    return errors


def _from_spec(name: str, spec: Mapping[str, Any], source: str) -> Endpoint | None:
    """An Endpoint from a settings or admin definition; None (logged) when it is invalid, so a
    bad definition fails closed instead of reaching an unchecked address."""
    unknown = set(spec) - SPEC_FIELDS if source == "settings" else set()
    fields = {
        "kind": spec.get("kind", ""),
        "base_url": spec.get("base_url", "") or "",
        "api_key_env": spec.get("api_key_env", "") or "",
        "requires_api_key": spec.get("requires_api_key", True),
        "models": spec.get("models", []),
    }
    errors = endpoint_spec_errors(name=name, **fields)
    if unknown or errors:
        logger.error(
            "model endpoint %r (%s) is ignored: %s",
            name,
            source,
            {**errors, **({"unknown fields": sorted(unknown)} if unknown else {})},
        )
        return None
    return Endpoint(
        name=name,
        kind=fields["kind"],
        base_url=fields["base_url"].rstrip("/"),
        api_key_env=fields["api_key_env"],
        requires_api_key=fields["requires_api_key"],
        models=tuple(dict.fromkeys(m.strip() for m in fields["models"])),
        source=source,
    )


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _configured_endpoints() -> dict[str, Endpoint]:
    """Endpoints from the code and the environment (no database): sources 1-3."""
    found: dict[str, Endpoint] = {SIMULATED: Endpoint(SIMULATED, SIMULATED, source="builtin")}
    declared = getattr(settings, "MODEL_ENDPOINTS", {}) or {}
    for name, spec in declared.items():
        if name in found:
            logger.error("model endpoint %r in MODEL_ENDPOINTS is ignored: reserved name", name)
            continue
        endpoint = _from_spec(name, spec if isinstance(spec, Mapping) else {}, "settings")
        if endpoint is not None:
            found[name] = endpoint
    openai_url = settings.OPENAI_BASE_URL
    if "openai" not in declared and (openai_url or settings.OPENAI_API_KEY):
        models = [settings.DEMO_MODEL, *getattr(settings, "OPENAI_MODELS", [])]
        endpoint = _from_spec(
            "openai",
            {
                "kind": "openai",
                "base_url": openai_url,
                "api_key_env": "OPENAI_API_KEY",
                # A local server (vLLM, Ollama) on loopback may run without a key, as before.
                "requires_api_key": not (openai_url and is_loopback_url(openai_url)),
                "models": [m for m in models if m],
            },
            "builtin",
        )
        if endpoint is not None:
            found["openai"] = endpoint
    if "anthropic" not in declared and getattr(settings, "ANTHROPIC_CONFIGURED", False):
        endpoint = _from_spec(
            "anthropic",
            {
                "kind": "anthropic",
                "base_url": settings.ANTHROPIC_BASE_URL,
                "api_key_env": "ANTHROPIC_API_KEY",
                "models": list(getattr(settings, "ANTHROPIC_MODELS", [])),
            },
            "builtin",
        )
        if endpoint is not None:
            found["anthropic"] = endpoint
    return found


def _admin_endpoint(row) -> Endpoint | None:
    return _from_spec(
        row.name,
        {
            "kind": row.kind,
            "base_url": row.base_url,
            "api_key_env": row.api_key_env,
            "requires_api_key": row.requires_api_key,
            "models": row.allowed_models,
        },
        "admin",
    )


def endpoint_get(name: str) -> Endpoint | None:
    """The registered, enabled endpoint called `name`, or None.

    The environment is consulted first, so the common names resolve without a query.
    """
    configured = _configured_endpoints()
    if name in configured:
        return configured[name]
    from .models import ModelEndpoint

    row = ModelEndpoint.objects.filter(name=name, enabled=True).first()
    return _admin_endpoint(row) if row is not None else None


def endpoints_all() -> dict[str, Endpoint]:
    """Every registered, enabled endpoint by name (for forms and error messages)."""
    from .models import ModelEndpoint

    found = _configured_endpoints()
    for row in ModelEndpoint.objects.filter(enabled=True).exclude(name__in=list(found)):
        endpoint = _admin_endpoint(row)
        if endpoint is not None:
            found[endpoint.name] = endpoint
    return dict(sorted(found.items()))


def endpoint_resolve(*, name: str, model: str | None) -> Endpoint:
    """The endpoint a call to `model` on `name` may go to; EndpointUnavailable otherwise.

    Call this right before every outbound call: registration can change while a study runs.
    model=None is for models the operator chose in settings (the moderation model), which the
    allow-list (what protocols may pick) does not govern.
    """
    endpoint = endpoint_get(name)
    if endpoint is None:
        raise EndpointUnavailable(f"endpoint {name!r} is not registered on this platform")
    if model is not None and not endpoint.allows(model):
        raise EndpointUnavailable(f"endpoint {name!r} does not allow model {model!r}")
    if endpoint.api_key_env and key_env_refusal(endpoint.api_key_env, forbidden_key_envs()):
        # Registration refuses this; a setting changed since. Never send the value.
        logger.error("endpoint %r names a platform secret as its key; call refused", name)
        raise EndpointUnavailable(f"endpoint {name!r} is misconfigured; ask the platform admin")
    return endpoint


def endpoint_usable(
    *, name: str, model: str, env: Mapping[str, str] | None = None
) -> tuple[bool, str]:
    """(ok, reason) for the launch checklist: is `name` registered, does it allow `model`, and
    is its key present? The reason is researcher-facing (no URLs, no variable names)."""
    env = os.environ if env is None else env
    try:
        endpoint = endpoint_resolve(name=name, model=model)
    except EndpointUnavailable as exc:
        return False, str(exc)[:1].upper() + str(exc)[1:]
    if endpoint.is_simulated:
        return True, _("Simulated model (no endpoint needed)")
    if endpoint.requires_api_key and not env.get(endpoint.api_key_env):
        return False, _(
            "Endpoint %(name)s has no API key configured on this server; ask the platform admin"
        ) % {"name": name}
    return True, _("Registered endpoint %(name)s") % {"name": name}


def protocol_model_errors(
    arms: Iterable[Mapping[str, Any]],
) -> list[tuple[tuple[str | int, ...], str]]:
    """(place as keys and indexes, message) for every arm whose endpoint is not registered or
    does not allow its model. The messages list what is registered, so a researcher can correct
    the protocol."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    known: dict[str, Endpoint] | None = None
    for i, arm in enumerate(arms):
        model = arm.get("model") or {}
        name, model_name = model.get("endpoint", ""), model.get("name", "")
        endpoint = endpoint_get(name)
        if endpoint is None:
            known = endpoints_all() if known is None else known
            errors.append(
                (
                    ("arms", i, "model", "endpoint"),
                    f"no registered endpoint called {name!r}; registered endpoints: "
                    + ", ".join(known),
                )
            )
        elif not endpoint.allows(model_name):
            errors.append(
                (
                    ("arms", i, "model", "name"),
                    f"{model_name!r} is not an allowed model on endpoint {name} "
                    f"(allowed: {endpoint.models_text()})",
                )
            )
    return errors


def registered_names() -> list[str]:
    return list(endpoints_all())
