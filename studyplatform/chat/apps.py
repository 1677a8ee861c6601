"""The chat app: conversations with the study's model, imported history, safety alerts."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "studyplatform.chat"
    label = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        # Explicit subscriptions at startup: withdrawal deletion and the data download.
        from studyplatform.core.events import (
            ParticipantContentDeletion,
            ParticipantDownloadRequested,
            subscribe,
        )

        from . import participant_data

        subscribe(ParticipantContentDeletion, participant_data.chat_delete)
        subscribe(ParticipantDownloadRequested, participant_data.chat_download)
