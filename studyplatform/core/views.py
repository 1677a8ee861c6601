"""Cross-cutting views: the health endpoint and the not-found handler."""

from django.http import JsonResponse
from django.urls import reverse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .health import health_report


@never_cache
@require_GET
def healthz(request):
    report = health_report()
    return JsonResponse(report, status=200 if report["ok"] else 503)


def not_found(request, exception=None):
    """A URL that matches no route: JSON under /api/ (an id that is not a number, say), as
    every API refusal is and as the OpenAPI contract declares; the HTML page elsewhere."""
    api_root = reverse("api-schema").removesuffix("schema/")
    if request.path.startswith(api_root):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)
