from django.apps import AppConfig


class ClassifiersConfig(AppConfig):
    name = "studyplatform.classifiers"
    label = "classifiers"
    verbose_name = "Conversation classifiers"

    def ready(self) -> None:
        # The protocol validator (studies, below this app) checks a protocol's `classifiers`
        # section with this library, as it checks custom instruments with surveys'.
        from studyplatform.studies.protocol.validate import (
            ClassifierLibrary,
            classifier_library_register,
        )

        from .library import protocol_rate_features, protocol_section_errors

        classifier_library_register(
            ClassifierLibrary(
                section_errors=protocol_section_errors, rate_features=protocol_rate_features
            )
        )
        # Classification runs are leased jobs: registering them lets the lease sweep find them.
        from . import jobs  # noqa: F401
