from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "studyplatform.exports"
    label = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        # Explicit registration at startup: withdrawal with deletion revokes built exports.
        from . import participant_data  # noqa: F401
