"""Console URLs for running a study: /console/<slug>/dashboard/, participants/, safety/, team/,
analyses/, exports/ (the design side has its own module)."""

from django.urls import path

from . import views_monitor as views

urlpatterns = [
    path("<slug:slug>/dashboard/", views.dashboard, name="monitor_dashboard"),
    path("<slug:slug>/participants/", views.participants, name="monitor_participants"),
    path("<slug:slug>/safety/", views.safety, name="monitor_safety"),
    path("<slug:slug>/safety/<int:alert_id>/", views.safety_alert, name="monitor_safety_alert"),
    path(
        "<slug:slug>/safety/<int:alert_id>/acknowledge/",
        views.safety_alert_action,
        {"action": "acknowledge"},
        name="monitor_safety_acknowledge",
    ),
    path(
        "<slug:slug>/safety/<int:alert_id>/resolve/",
        views.safety_alert_action,
        {"action": "resolve"},
        name="monitor_safety_resolve",
    ),
    path("<slug:slug>/team/", views.team, name="monitor_team"),
    path(
        "<slug:slug>/team/<int:membership_id>/remove/",
        views.team_remove,
        name="monitor_team_remove",
    ),
    path(
        "<slug:slug>/team/invitations/<int:invitation_id>/revoke/",
        views.team_invitation_revoke,
        name="monitor_team_invitation_revoke",
    ),
    path("<slug:slug>/analyses/", views.analyses, name="monitor_analyses"),
    path("<slug:slug>/exports/", views.exports, name="monitor_exports"),
]
