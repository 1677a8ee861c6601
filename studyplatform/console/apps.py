from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "studyplatform.console"
    label = "console"
    verbose_name = "Researcher console"
