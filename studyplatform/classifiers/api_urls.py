from django.urls import path

from . import api, coding_api

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
    path(
        "studies/<slug:slug>/coding-samples/",
        coding_api.CodingSampleListView.as_view(),
        name="coding-sample-list",
    ),
    path(
        "studies/<slug:slug>/coding-samples/<int:sample_id>/",
        coding_api.CodingSampleDetailView.as_view(),
        name="coding-sample-detail",
    ),
    path(
        "studies/<slug:slug>/coding-samples/<int:sample_id>/items/<int:item_id>/label/",
        coding_api.CodingLabelView.as_view(),
        name="coding-label",
    ),
    path(
        "studies/<slug:slug>/coding-samples/<int:sample_id>/agreement/",
        coding_api.CodingAgreementView.as_view(),
        name="coding-agreement",
    ),
]
