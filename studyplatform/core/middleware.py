"""Request middleware of our own."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .client_ip import peer_is_trusted_proxy


class ProxySSLHeaderFromTrustedProxiesOnly:
    """Believe the TLS proxy's X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER) only when the request
    came from one of TRUSTED_PROXIES.

    Django believes the header from anyone once SECURE_PROXY_SSL_HEADER is set. If uvicorn is
    reachable around the proxy, a client (or someone rewriting a victim's plain-HTTP request)
    could claim HTTPS and skip the redirect to it. With TRUSTED_PROXIES configured, the header
    is dropped from any other peer, so such a request is treated as the plain HTTP it is.
    Without TRUSTED_PROXIES the operator's BEHIND_TLS_PROXY alone decides (documented).
    Placed before SecurityMiddleware, which makes the redirect decision.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        header = settings.SECURE_PROXY_SSL_HEADER
        if header and settings.TRUSTED_PROXIES and not peer_is_trusted_proxy(request):
            request.META.pop(header[0], None)
        return self.get_response(request)
