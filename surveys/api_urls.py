"""Researcher survey API under /api/studies/<slug>/."""

from django.urls import path

from . import api

app_name = "surveys_api"

urlpatterns = [
    path(
        "studies/<slug:slug>/invitations/",
        api.InvitationListView.as_view(),
        name="invitation-list",
    ),
    path(
        "studies/<slug:slug>/invitations/<int:invitation_id>/",
        api.InvitationDetailView.as_view(),
        name="invitation-detail",
    ),
    path(
        "studies/<slug:slug>/invitations/<int:invitation_id>/remind/",
        api.InvitationRemindView.as_view(),
        name="invitation-remind",
    ),
    path("studies/<slug:slug>/responses/", api.ResponseListView.as_view(), name="response-list"),
    path("studies/<slug:slug>/compliance/", api.ComplianceView.as_view(), name="compliance"),
]
