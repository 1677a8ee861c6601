from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "studyplatform.compliance"
    label = "compliance"
    verbose_name = "Usage requirements"

    def ready(self) -> None:
        from . import hooks

        hooks.subscribe_all()
