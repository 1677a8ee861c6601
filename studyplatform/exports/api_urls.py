"""URLs of the dataset export API (mounted under /api/)."""

from django.urls import path

from . import api

app_name = "exports_api"

urlpatterns = [
    path("studies/<slug:slug>/exports/", api.ExportListView.as_view(), name="export-list"),
    path(
        "studies/<slug:slug>/exports/<int:export_id>/",
        api.ExportDetailView.as_view(),
        name="export-detail",
    ),
    path(
        "studies/<slug:slug>/exports/<int:export_id>/download/",
        api.ExportDownloadView.as_view(),
        name="export-download",
    ),
]
