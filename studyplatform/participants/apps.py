from django.apps import AppConfig


class ParticipantsConfig(AppConfig):
    name = "studyplatform.participants"
    label = "participants"
    verbose_name = "Participants"

    def ready(self) -> None:
        # Data downloads are leased jobs: registering them lets the lease sweep find them.
        from . import jobs  # noqa: F401
