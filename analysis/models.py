"""Analysis records: one row per analysis run, with its inputs' fingerprint and its outputs.

The statistics themselves live in the pure packages (``analysis/stats``, ``analysis/features``,
``analysis/linking.py``, ``analysis/plan.py``); this row is the status the UI polls and the
provenance a reader of the report needs (protocol version, data hash, code version).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from studyplatform.core.leases import LeaseFields
from studyplatform.studies.models import ProtocolVersion, Study


class AnalysisRun(LeaseFields):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Look(models.TextChoices):
        # An interim look at accumulating data (the study still collects) or the final analysis
        # (collection over). Recorded so a report can say how many looks preceded it.
        INTERIM = "interim", _("Interim")
        FINAL = "final", _("Final")

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="analysis_runs")
    look = models.CharField(max_length=10, choices=Look.choices, default=Look.INTERIM)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0, help_text="0-100")
    step = models.CharField(max_length=20, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    protocol_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="+"
    )
    # SHA-256 of the input frames' canonical CSV bytes: same hash = same data analysed.
    data_hash = models.CharField(max_length=64, blank=True, default="")
    code_version = models.CharField(max_length=100, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    results = models.JSONField(null=True, blank=True)
    report_html = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["study", "-created_at"], name="analysis_run_study_idx")]

    def __str__(self) -> str:
        return f"analysis run {self.pk} of {self.study.slug} ({self.status})"
