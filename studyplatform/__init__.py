"""Study Platform: longitudinal studies of conversational-AI use and wellbeing."""

from .celery import app as celery_app

__all__ = ["celery_app"]
