from django.urls import path

from . import api

app_name = "analysis_api"

urlpatterns = [
    path(
        "studies/<slug:slug>/analysis-runs/",
        api.AnalysisRunListView.as_view(),
        name="analysis-run-list",
    ),
    path(
        "studies/<slug:slug>/analysis-runs/<int:run_id>/",
        api.AnalysisRunDetailView.as_view(),
        name="analysis-run-detail",
    ),
    path(
        "studies/<slug:slug>/analysis-runs/<int:run_id>/report/",
        api.AnalysisRunReportView.as_view(),
        name="analysis-run-report",
    ),
]
