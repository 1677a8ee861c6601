from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "studyplatform.exports"
    label = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        # Explicit registration at startup: withdrawal with deletion revokes built exports.
        # Exports are leased jobs: registering them lets the lease sweep find them.
        from . import (
            jobs,  # noqa: F401
            participant_data,  # noqa: F401
        )
