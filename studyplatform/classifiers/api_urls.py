from django.urls import path

from . import api

app_name = "classifiers_api"

urlpatterns = [
    path("studies/<slug:slug>/classifiers/", api.ClassifierListView.as_view(), name="classifiers"),
    path(
        "studies/<slug:slug>/classification-runs/",
        api.ClassificationRunListView.as_view(),
        name="classification-run-list",
    ),
    path(
        "studies/<slug:slug>/classification-runs/<int:run_id>/",
        api.ClassificationRunDetailView.as_view(),
        name="classification-run-detail",
    ),
]
