"""Dataset export records: what was asked for, how far the build got, and the file produced.

The text anonymizer in anonymize/ needs no tables. The per-export HMAC key is stored encrypted
(so a later export can deliberately reuse it) and only its SHA-256 fingerprint is ever shown.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from studyplatform.core.fields import EncryptedTextField
from studyplatform.core.leases import LeaseFields
from studyplatform.studies.models import Study


class DatasetExport(LeaseFields):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired (file deleted)"
        REVOKED = "revoked", "Revoked (file deleted)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="dataset_exports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent, 0-100.")
    # tables, format, dates, chat_mode, include_time_of_day, k, quasi_identifiers,
    # include_pilot, reuse_key_of: everything that decides the content, recorded as asked.
    options = models.JSONField(default=dict)
    reuse_key_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    key = EncryptedTextField(help_text="Hex HMAC key; encrypted at rest, never shown.")
    key_fingerprint = models.CharField(max_length=64)
    file_name = models.CharField(max_length=200, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    size = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, default="")
    detection_counts = models.JSONField(default=dict, blank=True)
    disclosure = models.JSONField(default=dict, blank=True, help_text="k-anonymity report.")
    # Set when a participant in the zip withdrew and asked for deletion (the file is deleted):
    # the reason never names the participant.
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=300, blank=True, default="")
    replaced_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"], name="export_status_expiry_idx")]

    def __str__(self) -> str:
        return f"export {self.pk} of {self.study.slug} ({self.status})"

    def is_revoked(self) -> bool:
        return self.status == self.Status.REVOKED

    def is_expired(self, now) -> bool:
        return self.status == self.Status.EXPIRED or (
            self.expires_at is not None and self.expires_at <= now
        )


class DatasetExportMember(models.Model):
    """One participant whose data is in a finished export's zip.

    Written when the build finishes and kept while the file exists, so that a withdrawal with
    deletion can find, exactly, the zips that still hold that participant and revoke them.
    """

    export = models.ForeignKey(DatasetExport, on_delete=models.CASCADE, related_name="members")
    participant = models.ForeignKey(
        "participants.Participant", on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["export", "participant"], name="unique_export_member")
        ]

    def __str__(self) -> str:
        return f"participant {self.participant_id} in export {self.export_id}"
