from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "studyplatform.exports"
    label = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        # Explicit subscription at startup: withdrawal with deletion revokes built exports.
        from studyplatform.core.events import ParticipantContentDeletion, subscribe

        from . import participant_data

        subscribe(ParticipantContentDeletion, participant_data.exports_delete)
        # Exports are leased jobs: registering them lets the lease sweep find them.
        from . import jobs  # noqa: F401
