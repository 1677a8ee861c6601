"""Per-day usage against the protocol's requirement, and the nudges after a missed period.

``ComplianceDay`` rows are a cache of what ``analysis.features.usage.daily_usage`` computes from
the participant's messages (recomputable at any time: ``manage.py compliance_recompute``);
days without a row had no chat. ``UsageNudge`` rows are created ahead (one per counted period,
at the configured local time after it) and claimed by the beat tick, so each missed period is
nudged once, durably, whatever the number of workers.
"""

from __future__ import annotations

from django.db import models

from studyplatform.participants.models import Participant


class ComplianceDay(models.Model):
    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="compliance_days"
    )
    date = models.DateField(help_text="The participant's local calendar date.")
    study_day = models.IntegerField(help_text="0 = the local enrollment date.")
    active_minutes = models.FloatField(default=0)
    messages = models.PositiveIntegerField(default=0, help_text="Messages the participant sent.")
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["participant", "date"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "date"], name="compliance_day_unique")
        ]

    def __str__(self) -> str:
        return f"{self.participant_id} {self.date}: {self.active_minutes:.1f} min"


class UsageNudge(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Being checked"
        SENT = "sent", "Sent (the period was missed)"
        NOT_NEEDED = "not_needed", "Not needed (the period was met)"
        CANCELLED = "cancelled", "Cancelled (participant no longer active)"
        EXPIRED = "expired", "Expired (checked too late to be useful)"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="nudges")
    period = models.PositiveIntegerField(help_text="Index of the day (or week) checked.")
    period_first = models.DateField()
    period_last = models.DateField()
    due_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    claim = models.CharField(max_length=16, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    channels = models.JSONField(default=list)
    active_minutes = models.FloatField(null=True, blank=True)
    messages = models.PositiveIntegerField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["participant", "period"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "period"], name="usage_nudge_unique")
        ]
        indexes = [models.Index(fields=["status", "due_at"])]

    def __str__(self) -> str:
        return f"nudge {self.participant_id}#{self.period} ({self.status})"
