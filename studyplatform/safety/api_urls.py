"""Researcher API routes for the safety-alert review queue (paths unchanged since the queue
moved out of the chat app)."""

from django.urls import path

from . import api

app_name = "safety_api"

urlpatterns = [
    path(
        "studies/<slug:slug>/safety-alerts/",
        api.SafetyAlertListView.as_view(),
        name="safety-alert-list",
    ),
    path(
        "studies/<slug:slug>/safety-alerts/<int:alert_id>/",
        api.SafetyAlertDetailView.as_view(),
        name="safety-alert-detail",
    ),
    path(
        "studies/<slug:slug>/safety-alerts/<int:alert_id>/acknowledge/",
        api.SafetyAlertAcknowledgeView.as_view(),
        name="safety-alert-acknowledge",
    ),
    path(
        "studies/<slug:slug>/safety-alerts/<int:alert_id>/resolve/",
        api.SafetyAlertResolveView.as_view(),
        name="safety-alert-resolve",
    ),
]
