"""The surveys app registers its reactions to other apps' events explicitly, at start-up."""

from django.apps import AppConfig


class SurveysConfig(AppConfig):
    name = "surveys"
    label = "surveys"
    verbose_name = "Surveys"

    def ready(self):
        from . import hooks

        hooks.subscribe_all()
