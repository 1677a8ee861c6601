"""System checks: an invalid model endpoint in the environment stops `check`, `migrate` and the
launcher with a message naming the endpoint and the field, instead of being silently ignored."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core.checks import Error, register

from .model_endpoints import SIMULATED, SPEC_FIELDS, endpoint_spec_errors


@register()
def model_endpoints_check(app_configs=None, **kwargs) -> list[Error]:
    problems: list[Error] = []
    for name, spec in (getattr(settings, "MODEL_ENDPOINTS", {}) or {}).items():
        where = f"MODEL_ENDPOINTS[{name!r}]"
        if name == SIMULATED:
            problems.append(Error(f"{where}: 'simulated' is built in", id="core.E101"))
            continue
        if not isinstance(spec, Mapping):
            problems.append(Error(f"{where}: must be a JSON object", id="core.E101"))
            continue
        for field in sorted(set(spec) - SPEC_FIELDS):
            problems.append(
                Error(
                    f"{where}.{field}: unknown field",
                    hint="Fields: " + ", ".join(sorted(SPEC_FIELDS)),
                    id="core.E101",
                )
            )
        errors = endpoint_spec_errors(
            name=name,
            kind=spec.get("kind", ""),
            base_url=spec.get("base_url", "") or "",
            api_key_env=spec.get("api_key_env", "") or "",
            requires_api_key=spec.get("requires_api_key", True),
            models=spec.get("models", []),
        )
        for field, messages in errors.items():
            for message in messages:
                problems.append(Error(f"{where}.{field}: {message}", id="core.E101"))
    return problems
