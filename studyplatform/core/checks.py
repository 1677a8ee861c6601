"""System checks of our own, run by `manage.py check` (and `migrate`, the launcher) next to
Django's: an invalid model endpoint in the environment stops the platform with a message naming
the endpoint and the field instead of being silently ignored; and, under `check --deploy`, a
SITE_URL that would put one-time links in plain-HTTP emails."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .model_endpoints import SIMULATED, SPEC_FIELDS, endpoint_spec_errors


@register(Tags.security, deploy=True)
def site_url_uses_https(app_configs, **kwargs) -> list[Warning]:
    """Links in emails (sign-in links, survey invitations, safety alerts) are built from
    SITE_URL, not from a request: with http:// they would send participants' one-time sign-in
    tokens over plain HTTP."""
    if settings.SITE_URL.startswith("https://"):
        return []
    return [
        Warning(
            f"SITE_URL is {settings.SITE_URL!r}: links in emails would use plain HTTP.",
            hint="Set SITE_URL to the public https:// address, e.g. https://study.example.org.",
            id="studyplatform.W001",
        )
    ]


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
