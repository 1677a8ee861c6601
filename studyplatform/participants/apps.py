from django.apps import AppConfig


class ParticipantsConfig(AppConfig):
    name = "studyplatform.participants"
    label = "participants"
    verbose_name = "Participants"
