"""The chat log: conversations, messages (a tree, for regenerated branches) and the
participant's memory notes (safety alerts live in the safety app).

Message text is encrypted at rest. A user message is committed before the model is called; an
assistant message is created at the first token and finalised with a status, so nothing a
participant typed is lost when a model, worker or network fails.
"""

from __future__ import annotations

from django.db import models

from studyplatform.core.fields import EncryptedTextField
from studyplatform.participants.models import Participant
from studyplatform.studies.models import Arm, ProtocolVersion


class Conversation(models.Model):
    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="conversations"
    )
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="+")
    title = EncryptedTextField(blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # The leaf of the branch the participant sees (regenerating or switching moves it).
    active_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    imported = models.BooleanField(default=False)
    import_source = models.CharField(max_length=20, blank=True, default="")
    external_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    has_custom_instructions = models.BooleanField(default=False)
    # The daily conversation task this conversation was opened from (its text in the
    # participant's language, as shown), sent to the model with the system prompt. Protocol
    # text, not something the participant typed, so it is stored in the clear.
    task_text = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "external_id"],
                condition=~models.Q(external_id=""),
                name="unique_imported_conversation",
            )
        ]

    def __str__(self) -> str:
        return f"conversation {self.pk} of {self.participant.code}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        SYSTEM = "system", "System"
        TOOL = "tool", "Tool"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (user message stored, reply not started)"
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        LENGTH = "length", "Stopped at the length limit"
        CANCELLED = "cancelled", "Cancelled by the participant (stop click or closed page)"
        ERROR = "error", "Error (upstream model or internal; see the error code)"
        FILTERED = "filtered", "Stopped by the provider's content filter"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="+")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    content = EncryptedTextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    # Idempotency: one click sends one message, even if the request is retried.
    client_request_id = models.CharField(max_length=64, blank=True, default="")
    # Timing (the participant's message: received_at; the reply: the rest).
    created_at = models.DateTimeField()
    received_at = models.DateTimeField(null=True, blank=True)
    upstream_sent_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="From the participant's message to the first token."
    )
    # What was asked for and what answered.
    arm = models.ForeignKey(Arm, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    protocol_version = models.ForeignKey(
        ProtocolVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    model_requested = models.CharField(max_length=200, blank=True, default="")
    model_reported = models.CharField(max_length=200, blank=True, default="")
    system_fingerprint = models.CharField(max_length=200, blank=True, default="")
    provider_response_id = models.CharField(max_length=200, blank=True, default="")
    finish_reason = models.CharField(max_length=20, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_estimated = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(
        max_length=40,
        blank=True,
        default="",
        help_text=(
            "Why a reply did not complete: stopped or disconnected (cancelled), upstream_<http "
            "status> or upstream_unreachable (error: the model's side), internal_database, "
            "internal_redis, internal_bug or internal_interrupted (error: our side; the last "
            "set by the stale-reply sweep)."
        ),
    )
    # When the streaming reply's text was last saved (its first token, then every checkpoint):
    # a reply still `streaming` long after this was abandoned by its process (stale-reply sweep).
    checkpoint_at = models.DateTimeField(null=True, blank=True)
    # Client context needed for analysis (never an IP address).
    tz_offset_minutes = models.SmallIntegerField(null=True, blank=True)
    # Imported history keeps its original ids, times and model.
    imported = models.BooleanField(default=False)
    external_id = models.CharField(max_length=64, blank=True, default="")
    content_type = models.CharField(max_length=40, blank=True, default="text")
    # Set when the protocol's retention removed the text after the study closed (chat/retention.py):
    # the row stays for usage analyses, with the text's length kept in place of the text.
    text_deleted_at = models.DateTimeField(null=True, blank=True)
    text_chars = models.PositiveIntegerField(null=True, blank=True)
    # Voice arms (chat/voice.py): how the participant's turn was made, and what the speech
    # models took. A participant in a voice arm may still type (modality text).
    modality = models.CharField(
        max_length=5, choices=[("text", "Text"), ("voice", "Voice")], default="text"
    )
    audio_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Participant's message: length of the recorded clip. Reply: length of its "
        "spoken audio (first synthesis).",
    )
    stt_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Participant's voice message: transcription time."
    )
    tts_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Reply: time to synthesise its speech (first synthesis)."
    )

    class Meta:
        ordering = ["conversation", "created_at", "id"]
        indexes = [
            models.Index(fields=["participant", "created_at"]),
            models.Index(fields=["conversation", "created_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_request_id"],
                condition=~models.Q(client_request_id=""),
                name="unique_client_request",
            ),
            models.UniqueConstraint(
                fields=["conversation", "external_id"],
                condition=~models.Q(external_id=""),
                name="unique_imported_message",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk} ({self.status})"


class ReplyCode:
    """The recorded reason a reply did not complete (Message.error_code), one per outcome, so
    the research log tells a participant's choice from a model's failure from ours. Upstream
    codes carry the provider's HTTP status: `upstream_<status>` (see `upstream`)."""

    # status cancelled: the participant chose to end the reply
    STOPPED = "stopped"  # clicked Stop
    DISCONNECTED = "disconnected"  # closed the page / lost the connection (ASGI cancelled us)
    # status error: the model's side
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    # status error: our side (never the participant's doing, never the model's)
    INTERNAL_DATABASE = "internal_database"
    INTERNAL_REDIS = "internal_redis"
    INTERNAL_BUG = "internal_bug"
    # Set by the stale-reply sweep (services.stale_replies_finish), not by the stream: the
    # process streaming the reply could not record how it ended (the database was down at
    # that moment, or the process was killed), so the row was left `streaming`.
    INTERNAL_INTERRUPTED = "internal_interrupted"
    INTERNAL = (INTERNAL_DATABASE, INTERNAL_REDIS, INTERNAL_BUG, INTERNAL_INTERRUPTED)

    @staticmethod
    def upstream(http_status: int | None) -> str:
        return f"upstream_{http_status}" if http_status else ReplyCode.UPSTREAM_UNREACHABLE


class VoiceClip(models.Model):
    """A participant's recorded voice message, kept (encrypted, core/filecrypt.py) only when
    their consent ticked the arm's keep_audio_checkbox. The file lives under
    MEDIA_ROOT/voice/; withdrawal with deletion and chat-text retention remove it."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="voice_clip")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="+")
    file_name = models.CharField(max_length=100, unique=True)
    content_type = models.CharField(max_length=100)
    size_bytes = models.PositiveIntegerField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"voice clip of message {self.message_id}"


class MemoryNote(models.Model):
    """The participant's own standing instructions to the model (like "custom instructions")."""

    participant = models.OneToOneField(Participant, on_delete=models.CASCADE, related_name="memory")
    text = EncryptedTextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"memory of {self.participant.code}"
