"""Deployment checks of our own, run by `manage.py check --deploy` next to Django's."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register


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
