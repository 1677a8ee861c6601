"""Researcher API routes for studies (mounted under /api/ by studyplatform/urls.py)."""

from django.urls import path

from . import api

app_name = "studies_api"

urlpatterns = [
    path("studies/", api.StudyListView.as_view(), name="study-list"),
    path("protocol/validate/", api.ProtocolValidateView.as_view(), name="protocol-validate"),
    path("model-endpoints/", api.ModelEndpointListView.as_view(), name="model-endpoint-list"),
    path("studies/<slug:slug>/", api.StudyDetailView.as_view(), name="study-detail"),
    path("studies/<slug:slug>/transition/", api.StudyTransitionView.as_view(), name="transition"),
    path("studies/<slug:slug>/arms/", api.ArmListView.as_view(), name="arm-list"),
    path("studies/<slug:slug>/protocol/", api.ProtocolView.as_view(), name="protocol"),
    path("studies/<slug:slug>/versions/", api.VersionListView.as_view(), name="version-list"),
    path(
        "studies/<slug:slug>/versions/<int:number>/",
        api.VersionDetailView.as_view(),
        name="version-detail",
    ),
    path(
        "studies/<slug:slug>/versions/<int:number>/diff/<int:other>/",
        api.VersionDiffView.as_view(),
        name="version-diff",
    ),
    path(
        "studies/<slug:slug>/consent-documents/",
        api.ConsentDocumentListView.as_view(),
        name="consent-list",
    ),
    path("studies/<slug:slug>/members/", api.MemberListView.as_view(), name="member-list"),
    path(
        "studies/<slug:slug>/members/<int:member_id>/",
        api.MemberDetailView.as_view(),
        name="member-detail",
    ),
    path(
        "studies/<slug:slug>/team-invitations/",
        api.InvitationListView.as_view(),
        name="invitation-list",
    ),
    path(
        "studies/<slug:slug>/team-invitations/<int:invitation_id>/",
        api.InvitationDetailView.as_view(),
        name="invitation-detail",
    ),
]
