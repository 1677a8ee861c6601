"""Participant questionnaire pages under /p/surveys/ and the daily task button under /p/tasks/."""

from django.urls import path

from . import views

app_name = "surveys"

urlpatterns = [
    path("p/surveys/<int:invitation_id>/", views.survey_start, name="start"),
    # "thanks" is listed before the instrument pattern so it is never read as an instrument key.
    path("p/surveys/<int:invitation_id>/thanks/", views.survey_thanks, name="thanks"),
    path("p/surveys/<int:invitation_id>/<slug:key>/", views.survey_instrument, name="instrument"),
    # Daily conversation tasks (daily_tasks.py): open a conversation from today's task card.
    path("p/tasks/today/start/", views.task_start, name="task_start"),
]
