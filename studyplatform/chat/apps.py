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
            ParticipantDownloadFilesRequested,
            ParticipantDownloadRequested,
            subscribe,
        )
        from studyplatform.safety.sources import MessageSource, message_source_register

        from . import participant_data, selectors

        subscribe(ParticipantContentDeletion, participant_data.chat_delete)
        subscribe(ParticipantDownloadRequested, participant_data.chat_download)
        subscribe(ParticipantDownloadFilesRequested, participant_data.chat_download_files)
        # The safety app sits below chat and reads stored messages (moderation, alert retries,
        # the review timeline) through this source instead of importing chat.
        message_source_register(
            MessageSource(
                participant_message=selectors.participant_message,
                messages_between=selectors.participant_messages_between,
            )
        )
