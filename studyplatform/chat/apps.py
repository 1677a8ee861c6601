"""The chat app: conversations with the study's model, imported history, safety alerts."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "studyplatform.chat"
    label = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        # Explicit registration at startup: withdrawal deletion and the data download.
        from . import participant_data  # noqa: F401
