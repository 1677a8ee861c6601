"""Researcher console gate: an account whose email address is not verified sees the "verify
your email" page on every console page (it cannot hold a study role yet, so there is nothing
else to show). Superusers count as verified. Study services enforce the same rule, so the API
cannot skip it; this only gives a person in the browser the page that tells them what to do."""

from __future__ import annotations

from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin

from .selectors import email_is_verified

# Console pages that handle unverified visitors themselves.
EXEMPT = {"invitation"}


class VerifiedEmailMiddleware(MiddlewareMixin):
    # MiddlewareMixin keeps the chain async-capable under ASGI (chat streams).
    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if match is None or match.namespace != "console" or match.url_name in EXEMPT:
            return None
        user = request.user
        if not user.is_authenticated or email_is_verified(user):
            return None
        status = 200 if request.method in ("GET", "HEAD") else 403
        return render(request, "registration/verify_required.html", {}, status=status)
