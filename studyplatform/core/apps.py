from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "studyplatform.core"
    label = "core"
    verbose_name = "Core"
