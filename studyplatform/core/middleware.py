"""Refuse query strings the database cannot hold.

PostgreSQL text cannot contain NUL, and psycopg refuses a query parameter holding one, so
`?participant=%00` on any filtered list was a 500. Rejecting NUL in query keys and values once,
here, covers every view. (Bodies are checked by the JSON parser and by form fields, which already
refuse NUL.) Works in both the sync and the async stack, so the async chat views stay async.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, JsonResponse


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
