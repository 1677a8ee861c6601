"""URLs of the design pages: study list and creation, designer, versions, previews, launch."""

from django.urls import path

from . import views_design as v

urlpatterns = [
    path("", v.study_list, name="study_list"),
    path("new/", v.study_new, name="study_new"),
    path("<slug:slug>/design/", v.design_view, name="design"),
    path("<slug:slug>/design/yaml/", v.design_yaml, name="design_yaml"),
    path("<slug:slug>/design/validate/", v.design_validate, name="design_validate"),
    path("<slug:slug>/design/calendar/", v.calendar_view, name="calendar"),
    path("<slug:slug>/design/<str:section>/", v.design_section, name="design_section"),
    path("<slug:slug>/versions/", v.versions_view, name="versions"),
    path("<slug:slug>/preview/<str:page>/", v.preview_view, name="preview"),
    path("<slug:slug>/launch/", v.launch_view, name="launch"),
    path("<slug:slug>/launch/transition/", v.launch_transition, name="launch_transition"),
    path("<slug:slug>/launch/test-models/", v.launch_test_models, name="launch_test_models"),
    path("<slug:slug>/launch/invites/", v.pilot_invite_create, name="pilot_invite_create"),
    path(
        "<slug:slug>/launch/invites/<int:invite_id>/revoke/",
        v.pilot_invite_revoke,
        name="pilot_invite_revoke",
    ),
    path("<slug:slug>/launch/reset-pilot/", v.pilot_reset, name="pilot_reset"),
]
