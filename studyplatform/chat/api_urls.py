"""Researcher API routes for chat logs and chat statistics."""

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
]
