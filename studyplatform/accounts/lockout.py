"""What a person sees when django-axes locks a sign-in (settings.AXES_LOCKOUT_CALLABLE).

Every sign-in form (/accounts/login/, /admin/login/, /api-auth/login/) authenticates through
Django's `authenticate()`, where axes counts failures per username and per client address
(`studyplatform.core.client_ip.client_ip`, which believes forwarding headers only from
TRUSTED_PROXIES). Once either count reaches AXES_FAILURE_LIMIT within the cool-off period,
further attempts (even with the right password) get this 429 page until the period passes.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from studyplatform.core.audit import audit_record
from studyplatform.core.client_ip import client_ip
from studyplatform.core.digests import lookup_digest


def _minutes() -> int:
    return max(1, int(settings.AXES_COOLOFF_TIME.total_seconds() // 60))


def _audit_once(request: HttpRequest, username: str) -> None:
    """One audit event per locked (username, client) per cool-off period: every refused attempt
    reaches this function, and an attacker must not be able to flood the append-only log."""
    address = client_ip(request)
    key = "axes-audit:" + lookup_digest(f"{username}\n{address}", "lockout")
    if cache.add(key, 1, timeout=int(settings.AXES_COOLOFF_TIME.total_seconds())):
        audit_record(
            actor="anonymous",
            action="account.login_locked",
            data={"username": username[:150], "client": address, "path": request.path[:200]},
        )


def lockout_response(request: HttpRequest, original_response=None, credentials=None):
    # axes' async middleware passes (request, credentials); read the name from the form instead.
    username = ""
    if isinstance(credentials, dict):
        username = str(credentials.get("username") or "")
    username = username or str(request.POST.get("username", ""))
    _audit_once(request, username)
    context = {"minutes": _minutes(), "limit": settings.AXES_FAILURE_LIMIT}
    response: HttpResponse = render(
        request, "registration/locked_out.html", context, status=settings.AXES_HTTP_RESPONSE_CODE
    )
    response["Retry-After"] = str(_minutes() * 60)
    return response
