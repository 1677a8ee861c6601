from django.urls import path

from . import api

app_name = "participants_api"

urlpatterns = [
    path(
        "studies/<slug:slug>/participants/",
        api.ParticipantListView.as_view(),
        name="participant-list",
    ),
    path(
        "studies/<slug:slug>/participants/<str:code>/withdraw/",
        api.ParticipantWithdrawView.as_view(),
        name="participant-withdraw",
    ),
    path(
        "studies/<slug:slug>/participants/<str:code>/identity/",
        api.IdentityView.as_view(),
        name="participant-identity",
    ),
    path("studies/<slug:slug>/funnel/", api.FunnelView.as_view(), name="funnel"),
    path(
        "studies/<slug:slug>/pilot-invites/",
        api.PilotInviteListView.as_view(),
        name="pilot-invite-list",
    ),
    path(
        "studies/<slug:slug>/pilot-invites/<int:invite_id>/",
        api.PilotInviteDetailView.as_view(),
        name="pilot-invite-detail",
    ),
]
