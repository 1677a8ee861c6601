"""Safety alerts: a possible crisis found in a chat message (lexicon detector or moderation)
or a flagged survey answer (e.g. PHQ-9 item 9), waiting for a safety reviewer.

The excerpt and the reviewers' notes are encrypted at rest.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from studyplatform.core.fields import EncryptedTextField
from studyplatform.participants.models import Participant
from studyplatform.studies.models import Study


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
        "chat.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
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
        # The table was created by the chat app before safety had an app of its own; keeping
        # its name made the move a state-only migration (no data copied, no downtime).
        db_table = "chat_safetyalert"
        ordering = ["status", "-created_at"]
        indexes = [models.Index(fields=["study", "status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.severity} {self.category} alert for {self.participant.code}"
