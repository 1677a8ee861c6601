from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "studyplatform.exports"
    label = "exports"
    verbose_name = "Exports"
