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
        # Classifier runs that send anonymized text to a judge use this app's anonymizer
        # (classifiers sits below exports, so it cannot import it).
        from studyplatform.classifiers.anonymization import text_anonymizer_register

        from .classifier_text import anonymizers_for

        text_anonymizer_register(anonymizers_for)
        # Exports are leased jobs: registering them lets the lease sweep find them.
        from . import jobs  # noqa: F401
