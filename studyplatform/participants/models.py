"""Participants: the pseudonymous participant, the identity vault, consent, allocation.

Research rows refer to a participant by `Participant` (whose public face is a random `code`);
direct identifiers (email, name, panel ids) and the per-participant date shift live only in
`Identity`, the vault, which is read through audited services.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from studyplatform.core.fields import EncryptedTextField
from studyplatform.core.leases import LeaseFields
from studyplatform.studies.models import Arm, ConsentDocument, ProtocolVersion, Study

# Crockford-style alphabet without look-alikes (no I, L, O, U, 0, 1): codes are read aloud.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_participant_code() -> str:
    return "P-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


class Participant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        WITHDRAWN = "withdrawn", "Withdrawn"

    class Withdrawal(models.TextChoices):
        KEEP = "keep", "Stop and keep what was collected"
        DELETE = "delete", "Stop and delete my data"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="participants")
    code = models.CharField(max_length=12, unique=True, default=new_participant_code)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    is_pilot = models.BooleanField(default=False)
    language = models.CharField(max_length=10, default="en")
    timezone = models.CharField(max_length=64, default="UTC")
    enrolled_at = models.DateTimeField()
    enrollment_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="+"
    )
    # Eligible participants' screener answers are research data (and the allocation strata).
    screener_answers = models.JSONField(default=dict, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawal_mode = models.CharField(
        max_length=10, choices=Withdrawal.choices, blank=True, default=""
    )
    withdrawal_by = models.CharField(
        max_length=20, blank=True, default="", help_text="participant or researcher"
    )
    # Personal return link for studies that collect no email: only a digest is stored.
    return_token_digest = models.CharField(max_length=64, blank=True, default="", db_index=True)
    password_hash = models.CharField(max_length=256, blank=True, default="")

    class Meta:
        ordering = ["study", "-enrolled_at"]
        indexes = [models.Index(fields=["study", "status"])]

    def __str__(self) -> str:
        return self.code

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Identity(models.Model):
    """The identity vault: the only table holding direct identifiers. Encrypted; audited reads.

    Look-ups (sign-in by email, a returning panel id) use keyed digests, never the plaintext.
    """

    participant = models.OneToOneField(
        Participant, on_delete=models.CASCADE, related_name="identity"
    )
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="+")
    email = EncryptedTextField(blank=True, default="")
    email_digest = models.CharField(max_length=64, blank=True, default="", db_index=True)
    name = EncryptedTextField(blank=True, default="")
    panel = models.CharField(max_length=20, blank=True, default="")
    panel_pid = EncryptedTextField(blank=True, default="")
    panel_pid_digest = models.CharField(max_length=64, blank=True, default="", db_index=True)
    panel_study_id = EncryptedTextField(blank=True, default="")
    panel_session_id = EncryptedTextField(blank=True, default="")
    # Per-participant shift (1-364 days) applied to dates in exports that use date shifting.
    date_shift_days = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(
                fields=["study", "email_digest"],
                condition=~models.Q(email_digest=""),
                name="unique_email_per_study",
            ),
            models.UniqueConstraint(
                fields=["study", "panel_pid_digest"],
                condition=~models.Q(panel_pid_digest=""),
                name="unique_panel_pid_per_study",
            ),
        ]

    def __str__(self) -> str:
        return f"identity of {self.participant.code}"


class ConsentRecord(models.Model):
    """What a participant agreed to: the exact document version, its text hash and choices."""

    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="consent_records"
    )
    document = models.ForeignKey(ConsentDocument, on_delete=models.PROTECT, related_name="+")
    version = models.PositiveIntegerField()
    language = models.CharField(max_length=10)
    text_hash = models.CharField(max_length=64)
    choices = models.JSONField(default=dict)
    signature_name = EncryptedTextField(blank=True, default="")
    signed_at = models.DateTimeField()
    protocol_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["participant", "-signed_at"]

    def __str__(self) -> str:
        return f"{self.participant.code} consent v{self.version} ({self.language})"

    def allows(self, key: str) -> bool:
        return bool(self.choices.get(key))


class Allocation(models.Model):
    """The arm a participant was randomized to. Immutable once written."""

    participant = models.OneToOneField(
        Participant, on_delete=models.PROTECT, related_name="allocation"
    )
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="allocations")
    method = models.CharField(max_length=20)
    stratum = models.CharField(max_length=200, blank=True, default="")
    sequence_number = models.PositiveIntegerField(help_text="Position in the stratum's sequence.")
    block_number = models.PositiveIntegerField(null=True, blank=True)
    allocated_at = models.DateTimeField()
    protocol_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.participant.code} -> {self.arm.key}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Allocations are immutable.")
        super().save(*args, **kwargs)


class AllocationState(models.Model):
    """Where each stratum's allocation sequence has got to. Locked while allocating."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    stratum = models.CharField(max_length=200, default="")
    next_position = models.PositiveIntegerField(default=0)
    # Cursor into the block sequence so the next block is found without replaying history.
    block_no = models.PositiveIntegerField(default=0)
    block_start = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "stratum"], name="unique_allocation_state")
        ]

    def __str__(self) -> str:
        return f"{self.study.slug} [{self.stratum or 'all'}] next {self.next_position}"


class FunnelCount(models.Model):
    """Anonymous daily counts: visits, screenings, eligibility (per failed rule), consents.

    Nothing about an ineligible person is kept except these counts.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="funnel_counts")
    day = models.DateField()
    stage = models.CharField(max_length=80)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["study", "day", "stage"]
        constraints = [
            models.UniqueConstraint(fields=["study", "day", "stage"], name="unique_funnel_count")
        ]

    def __str__(self) -> str:
        return f"{self.study.slug} {self.day} {self.stage}={self.count}"


class SignInLink(models.Model):
    """A single-use, expiring sign-in link sent by email (the token itself is never stored)."""

    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="signin_links"
    )
    nonce_digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    next_path = models.CharField(max_length=300, blank=True, default="")

    def __str__(self) -> str:
        return f"sign-in link for {self.participant.code}"


class PilotInvite(models.Model):
    """An invitation for a pilot tester to join a piloting study."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="pilot_invites")
    label = models.CharField(max_length=100, help_text="Who it is for (not shown to them).")
    token_digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    used_by = models.OneToOneField(
        Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="pilot_invite"
    )
    revoked = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"pilot invite {self.label!r} ({self.study.slug})"


class DataDownload(LeaseFields):
    """A participant's "download my data" archive, built in the background."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired (file deleted)"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="downloads")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # The archive on disk is encrypted (core.filecrypt); sha256 is that of the clear zip.
    file_name = models.CharField(max_length=200, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"data download {self.pk} of {self.participant.code} ({self.status})"

    def is_available(self, now) -> bool:
        return self.status == self.Status.READY and (
            self.expires_at is None or self.expires_at > now
        )
