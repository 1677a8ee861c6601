"""Survey records: schedule cursors, invitations (one per occurrence) and responses.

A cursor holds each participant's next occurrence of each time-based schedule entry, so a beat
tick finds due work with one indexed query instead of recomputing every participant's schedule.
An invitation is unique per (participant, entry, occurrence): two ticks, or a tick re-run after a
crash, cannot create it twice. Responses keep answers encrypted and scores in the clear.
"""

from __future__ import annotations

import datetime as dt

from django.db import models

from studyplatform.core.fields import EncryptedJSONField
from studyplatform.participants.models import Participant
from studyplatform.studies.models import ProtocolVersion, Study


class ScheduleCursor(models.Model):
    # No index of its own: unique_cursor starts with it (every index is written on each tick).
    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="schedule_cursors", db_index=False
    )
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    entry_key = models.CharField(max_length=40)
    # The next occurrence not yet turned into an invitation (null when the series is over).
    next_opens_at = models.DateTimeField(null=True, blank=True)
    next_occurrence_key = models.CharField(max_length=60, blank=True, default="")
    next_wave = models.PositiveIntegerField(null=True, blank=True)
    next_closes_at = models.DateTimeField(null=True, blank=True)
    next_reminders = models.JSONField(default=list, blank=True)
    # The first of next_reminders: a tick creates invitations by copying columns in SQL, and an
    # invitation's next_reminder_at is set from the start.
    next_reminder_at = models.DateTimeField(null=True, blank=True)
    # Set when the next occurrence was materialized; a later tick computes the one after.
    needs_advance = models.BooleanField(default=False)
    protocol_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["participant", "entry_key"], name="unique_cursor")
        ]
        indexes = [
            models.Index(fields=["needs_advance", "next_opens_at"], name="cursor_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.participant.code}/{self.entry_key} next {self.next_occurrence_key}"


class Invitation(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        OPENED = "opened", "Opened"
        STARTED = "started", "Started"
        COMPLETED = "completed", "Completed"
        EXPIRED = "expired", "Expired"
        SKIPPED = "skipped", "Skipped (a condition did not hold)"
        CANCELLED = "cancelled", "Cancelled (withdrawal)"

    OPEN = (Status.SENT, Status.OPENED, Status.STARTED)
    PENDING = (Status.SCHEDULED, Status.SENDING, *OPEN)

    # No index of their own: unique_occurrence and inv_study_wave_idx start with them, and
    # every index costs a write each time a tick changes an invitation's status.
    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="invitations", db_index=False
    )
    study = models.ForeignKey(
        Study, on_delete=models.CASCADE, related_name="invitations", db_index=False
    )
    entry_key = models.CharField(max_length=40)
    occurrence_key = models.CharField(max_length=60)
    wave = models.PositiveIntegerField(null=True, blank=True)
    instruments = models.JSONField(default=list)
    protocol_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    opens_at = models.DateTimeField()
    closes_at = models.DateTimeField()
    reminder_times = models.JSONField(default=list, blank=True)
    next_reminder_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    reminders_sent_at = models.JSONField(default=list, blank=True)
    claim = models.CharField(max_length=32, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=60, blank=True, default="")

    class Meta:
        ordering = ["participant", "opens_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "entry_key", "occurrence_key"], name="unique_occurrence"
            )
        ]
        indexes = [
            models.Index(fields=["status", "opens_at"], name="inv_status_opens_idx"),
            models.Index(fields=["status", "closes_at"], name="inv_status_closes_idx"),
            models.Index(fields=["next_reminder_at"], name="inv_reminder_idx"),
            models.Index(fields=["study", "entry_key", "wave"], name="inv_study_wave_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.participant.code} {self.entry_key}/{self.occurrence_key} ({self.status})"

    def is_open(self, now) -> bool:
        return self.status in self.OPEN and self.opens_at <= now < self.closes_at

    def timeline(self) -> list[tuple[str, object]]:
        events = [("scheduled", self.created_at), ("opens", self.opens_at)]
        events += [
            (name, getattr(self, f"{name}_at"))
            for name in ("sent", "opened", "started", "completed", "expired", "cancelled")
            if getattr(self, f"{name}_at")
        ]
        events += [("reminder", dt.datetime.fromisoformat(at)) for at in self.reminders_sent_at]
        return sorted(events, key=lambda e: e[1])


class Response(models.Model):
    """One instrument answered within one invitation. Submitted responses are immutable; a
    correction is a new response that supersedes the old one (audited)."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft (saved, not submitted)"
        SUBMITTED = "submitted", "Submitted"

    invitation = models.ForeignKey(Invitation, on_delete=models.CASCADE, related_name="responses")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="+")
    instrument_key = models.CharField(max_length=40)
    instrument_version = models.CharField(max_length=20)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    answers = EncryptedJSONField(default=dict)
    scores = models.JSONField(default=dict, blank=True)
    bands = models.JSONField(default=dict, blank=True)
    flags = models.JSONField(default=list, blank=True)
    valid = models.BooleanField(default=False)
    protocol_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )

    class Meta:
        ordering = ["invitation", "instrument_key", "started_at"]
        indexes = [models.Index(fields=["participant", "instrument_key", "submitted_at"])]

    def __str__(self) -> str:
        return f"{self.participant.code} {self.instrument_key} ({self.status})"

    def save(self, *args, **kwargs):
        if self.pk is not None and self.status == self.Status.SUBMITTED:
            stored = Response.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if stored == self.Status.SUBMITTED:
                raise ValueError("A submitted response is immutable; submit a correction.")
        super().save(*args, **kwargs)


class TaskAssignment(models.Model):
    """The daily conversation task one participant was shown on one study day.

    Created the first time the day's task is shown (home or chat page), at most once per
    participant and study day (the unique constraint makes two tabs opening at the same moment
    create one row). Whether the participant chatted after seeing it is `first_message_at`
    (the first study-chat message sent that study day at or after `shown_at`); whether they
    opened a conversation from it is `conversation`.
    """

    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="task_assignments", db_index=False
    )
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    # Days since enrollment in the participant's local calendar (0 = the enrollment day).
    study_day = models.PositiveSmallIntegerField()
    local_date = models.DateField()
    list_key = models.CharField(max_length=40)
    task_key = models.CharField(max_length=40)
    # The task as the protocol wrote it ({language: text} or one string) when it was shown, so
    # a later protocol change does not rewrite what a participant saw.
    text = models.JSONField()
    open_new_conversation = models.BooleanField(default=False)
    protocol_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="+"
    )
    shown_at = models.DateTimeField()
    conversation = models.ForeignKey(
        "chat.Conversation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    conversation_started_at = models.DateTimeField(null=True, blank=True)
    first_message = models.ForeignKey(
        "chat.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    first_message_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["participant", "study_day"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "study_day"], name="unique_task_per_participant_day"
            )
        ]
        indexes = [models.Index(fields=["study", "study_day"])]

    def __str__(self) -> str:
        return f"{self.participant.code} day {self.study_day}: {self.list_key}.{self.task_key}"
