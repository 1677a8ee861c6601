"""The researcher console: /console/... (design pages and monitoring pages live in their own
modules so they can grow independently)."""

from django.urls import include, path

from . import views_account

app_name = "console"

urlpatterns = [
    path("", include("studyplatform.console.urls_design")),
    path("", include("studyplatform.console.urls_monitor")),
    # Where an emailed team invitation leads (it handles signed-out and unverified visitors
    # itself). Last, so a study whose slug is "invitations" keeps its pages: a random token
    # never equals one of their names.
    path("invitations/<str:token>/", views_account.invitation, name="invitation"),
]
