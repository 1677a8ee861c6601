"""Researcher API routes for chat logs, chat statistics and the safety-alert queue."""

from django.urls import path

from . import api

app_name = "chat_api"

urlpatterns = [
    path(
        "studies/<slug:slug>/conversations/",
        api.ConversationListView.as_view(),
        name="conversation-list",
    ),
    path(
        "studies/<slug:slug>/conversations/<int:conversation_id>/",
        api.ConversationDetailView.as_view(),
        name="conversation-detail",
    ),
    path("studies/<slug:slug>/chat-stats/", api.ChatStatsView.as_view(), name="chat-stats"),
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
