"""URL map: participant pages, researcher API and docs, admin, health."""

from csp.constants import SELF
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from studyplatform.core.views import healthz

handler404 = "studyplatform.core.views.not_found"

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("healthz", healthz, name="healthz"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("console/", include("studyplatform.console.urls")),
    path("accounts/", include("studyplatform.accounts.urls")),
    path("api/", include("studyplatform.studies.api_urls")),
    path("api/", include("studyplatform.participants.api_urls")),
    path("api/", include("studyplatform.chat.api_urls")),
    path("api/", include("studyplatform.safety.api_urls")),
    path("api/", include("surveys.api_urls")),
    path("api/", include("analysis.api_urls")),
    path("api/", include("studyplatform.classifiers.api_urls")),
    path("api/", include("studyplatform.exports.api_urls")),
    path("", include("studyplatform.participants.urls")),
    path("", include("studyplatform.chat.urls")),
    path("", include("surveys.urls")),
    # Researcher sign-in for the browsable API (any researcher account, not only staff).
    path("api-auth/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Self-hosted Swagger UI (drf_spectacular_sidecar); the split view serves its initialising
    # script from /api/docs/?script= rather than inline, as the Content-Security-Policy requires.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="api/swagger_ui.html"
        ),
        name="api-docs",
    ),
    # Self-hosted Redoc (the sidecar's redoc.standalone.js). Redoc renders with styled-components,
    # which writes its stylesheet into <style> elements at run time, and builds its search index
    # in a blob: worker: this page alone allows inline styles and blob: workers (still no inline
    # or outside scripts).
    path(
        "api/redoc/",
        csp_update({"style-src": ["'unsafe-inline'"], "worker-src": [SELF, "blob:"]})(
            SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html")
        ),
        name="api-redoc",
    ),
]
