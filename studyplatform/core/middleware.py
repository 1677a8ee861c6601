"""Request middleware of our own: the TLS proxy's header believed only from trusted proxies,
query strings the database cannot hold refused once for every view, and the content security
policy left off event streams."""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from csp.middleware import CSPMiddleware
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .client_ip import peer_is_trusted_proxy
from .sse import EventStreamResponse


class ProxySSLHeaderFromTrustedProxiesOnly:
    """Believe the TLS proxy's X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER) only when the request
    came from one of TRUSTED_PROXIES.

    Django believes the header from anyone once SECURE_PROXY_SSL_HEADER is set. If uvicorn is
    reachable around the proxy, a client (or someone rewriting a victim's plain-HTTP request)
    could claim HTTPS and skip the redirect to it. With TRUSTED_PROXIES configured, the header
    is dropped from any other peer, so such a request is treated as the plain HTTP it is.
    Without TRUSTED_PROXIES the operator's BEHIND_TLS_PROXY alone decides (documented).
    Placed before SecurityMiddleware, which makes the redirect decision.

    Async-capable: as the outermost middleware, a sync-only one made Django run every request's
    whole middleware chain in a worker thread, and the async chat views back on the event loop
    (two thread hops per request, and the chat stream's database rounds pinned to that thread).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    @staticmethod
    def _drop_untrusted_header(request: HttpRequest) -> None:
        header = settings.SECURE_PROXY_SSL_HEADER
        if header and settings.TRUSTED_PROXIES and not peer_is_trusted_proxy(request):
            request.META.pop(header[0], None)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        self._drop_untrusted_header(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        self._drop_untrusted_header(request)
        return await self.get_response(request)


# PostgreSQL text cannot contain NUL, and psycopg refuses a query parameter holding one, so
# `?participant=%00` on any filtered list was a 500. Rejecting NUL in query keys and values once,
# here, covers every view. (Bodies are checked by the JSON parser and by form fields, which already
# refuse NUL.) Works in both the sync and the async stack, so the async chat views stay async.


def _refusal(request: HttpRequest) -> JsonResponse | None:
    for key, values in request.GET.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return JsonResponse(
                {"detail": f"Query parameter {key!r} must not contain NUL characters."},
                status=400,
            )
    return None


class RefuseNulQueryMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return _refusal(request) or self.get_response(request)

    async def __acall__(self, request):
        return _refusal(request) or await self.get_response(request)


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, minus the policy for event streams.

    A Content-Security-Policy governs what a document or worker may load; a text/event-stream
    response (the chat reply) is read by the page's script and never rendered, so the header
    is meaningless there. django-csp builds the policy string on every response before looking
    at any exemption: ~0.2 ms of each chat send's time to first token, for nothing.
    """

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if isinstance(response, EventStreamResponse):
            return response
        return super().process_response(request, response)
