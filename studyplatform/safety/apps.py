"""The safety app: crisis detector, safety alerts and their review queue, moderation, the daily
digest and the crisis resources shown to participants. Chat and surveys call its services."""

from django.apps import AppConfig


class SafetyConfig(AppConfig):
    name = "studyplatform.safety"
    label = "safety"
    verbose_name = "Safety"
