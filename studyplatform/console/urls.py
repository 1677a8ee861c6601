"""The researcher console: /console/... (design pages and monitoring pages live in their own
modules so they can grow independently)."""

from django.urls import include, path

app_name = "console"

urlpatterns = [
    path("", include("studyplatform.console.urls_design")),
    path("", include("studyplatform.console.urls_monitor")),
]
