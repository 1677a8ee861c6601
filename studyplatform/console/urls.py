"""The researcher console: /console/... the study list and each study's overview, design pages
(designer, versions, previews, launch), monitoring pages (dashboard, participants, safety, team,
analyses and their reports, exports, classifier runs) and the team-invitation landing page."""

from django.urls import path

from .views import classifiers, design, invitation, monitor, overview

app_name = "console"

urlpatterns = [
    # Design: study list and creation, designer, versions, previews, launch.
    path("", design.study_list, name="study_list"),
    path("new/", design.study_new, name="study_new"),
    # Where every study's pages start (the first tab).
    path("<slug:slug>/", overview.overview, name="overview"),
    path("<slug:slug>/design/", design.design_view, name="design"),
    path("<slug:slug>/design/yaml/", design.design_yaml, name="design_yaml"),
    path("<slug:slug>/design/validate/", design.design_validate, name="design_validate"),
    path("<slug:slug>/design/calendar/", design.calendar_view, name="calendar"),
    path("<slug:slug>/design/<str:section>/", design.design_section, name="design_section"),
    path("<slug:slug>/versions/", design.versions_view, name="versions"),
    path("<slug:slug>/preview/<str:page>/", design.preview_view, name="preview"),
    path("<slug:slug>/launch/", design.launch_view, name="launch"),
    path("<slug:slug>/launch/transition/", design.launch_transition, name="launch_transition"),
    path("<slug:slug>/launch/test-models/", design.launch_test_models, name="launch_test_models"),
    path("<slug:slug>/launch/invites/", design.pilot_invite_create, name="pilot_invite_create"),
    path(
        "<slug:slug>/launch/invites/<int:invite_id>/revoke/",
        design.pilot_invite_revoke,
        name="pilot_invite_revoke",
    ),
    path("<slug:slug>/launch/reset-pilot/", design.pilot_reset, name="pilot_reset"),
    # Running a study.
    path("<slug:slug>/dashboard/", monitor.dashboard, name="monitor_dashboard"),
    path("<slug:slug>/participants/", monitor.participants, name="monitor_participants"),
    path("<slug:slug>/safety/", monitor.safety, name="monitor_safety"),
    path("<slug:slug>/safety/<int:alert_id>/", monitor.safety_alert, name="monitor_safety_alert"),
    path(
        "<slug:slug>/safety/<int:alert_id>/acknowledge/",
        monitor.safety_alert_action,
        {"action": "acknowledge"},
        name="monitor_safety_acknowledge",
    ),
    path(
        "<slug:slug>/safety/<int:alert_id>/resolve/",
        monitor.safety_alert_action,
        {"action": "resolve"},
        name="monitor_safety_resolve",
    ),
    path("<slug:slug>/team/", monitor.team, name="monitor_team"),
    path(
        "<slug:slug>/team/<int:membership_id>/remove/",
        monitor.team_remove,
        name="monitor_team_remove",
    ),
    path(
        "<slug:slug>/team/invitations/<int:invitation_id>/revoke/",
        monitor.team_invitation_revoke,
        name="monitor_team_invitation_revoke",
    ),
    path("<slug:slug>/analyses/", monitor.analyses, name="monitor_analyses"),
    path(
        "<slug:slug>/analyses/<int:run_id>/report/",
        monitor.analysis_report,
        name="monitor_analysis_report",
    ),
    path(
        "<slug:slug>/analyses/<int:run_id>/report/document/",
        monitor.analysis_report_document,
        name="monitor_analysis_report_document",
    ),
    path("<slug:slug>/exports/", monitor.exports, name="monitor_exports"),
    path("<slug:slug>/classifiers/", classifiers.classifiers, name="classifiers"),
    path(
        "<slug:slug>/classifiers/coding/", classifiers.coding_sample_new, name="coding_sample_new"
    ),
    path("<slug:slug>/classifiers/coding/<int:sample_id>/", classifiers.coding, name="coding"),
    path(
        "<slug:slug>/classifiers/coding/<int:sample_id>/agreement/",
        classifiers.coding_agreement_page,
        name="coding_agreement",
    ),
    # Where an emailed team invitation leads (it handles signed-out and unverified visitors
    # itself). Last, so a study whose slug is "invitations" keeps its pages: a random token
    # never equals one of their names.
    path("invitations/<str:token>/", invitation.invitation, name="invitation"),
]
