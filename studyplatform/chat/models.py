"""The chat log: conversations, messages (a tree, for regenerated branches), the participant's
memory notes, and safety alerts.

Message text is encrypted at rest. A user message is committed before the model is called; an
assistant message is created at the first token and finalised with a status, so nothing a
participant typed is lost when a model, worker or network fails.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from studyplatform.core.fields import EncryptedTextField
from studyplatform.participants.models import Participant
from studyplatform.studies.models import Arm, ProtocolVersion, Study


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
        CANCELLED = "cancelled", "Cancelled by the participant"
        ERROR = "error", "Error"
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
    error_code = models.CharField(max_length=40, blank=True, default="")
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


class MemoryNote(models.Model):
    """The participant's own standing instructions to the model (like "custom instructions")."""

    participant = models.OneToOneField(Participant, on_delete=models.CASCADE, related_name="memory")
    text = EncryptedTextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"memory of {self.participant.code}"


class SafetyAlert(models.Model):
    """A possible crisis, raised by the chat detector or a flagged survey answer."""

    class Severity(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="safety_alerts")
    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="safety_alerts"
    )
    source = models.CharField(max_length=20, help_text="chat or survey")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    severity = models.CharField(max_length=10, choices=Severity.choices)
    category = models.CharField(max_length=40)
    excerpt = EncryptedTextField(blank=True, default="")
    detector = models.CharField(max_length=60, blank=True, default="")
    created_at = models.DateTimeField()
    due_at = models.DateTimeField(help_text="created_at + the protocol's response time")
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.OPEN)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    notes = EncryptedTextField(blank=True, default="")

    class Meta:
        ordering = ["status", "-created_at"]
        indexes = [models.Index(fields=["study", "status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.severity} {self.category} alert for {self.participant.code}"
