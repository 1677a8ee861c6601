"""Classification runs and the labels they produce.

A run is a leased job (studyplatform/core/leases.py) that sends chat excerpts to a judge model
and stores one ClassifierLabel per (classifier version, judge model, target). The label table is
also the result cache: a label whose content hash matches what would be sent now is reused, and
a label with the same definition hash, judge and content hash on another target is copied, so
nothing is paid for twice (docs/classifiers.md, "Caching").

Labels belong to a participant and cascade with their messages and conversations, so withdrawal
with deletion (which deletes the messages) removes them and their cache entries too.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from studyplatform.chat.models import Conversation, Message
from studyplatform.core.leases import LeaseFields
from studyplatform.participants.models import Participant
from studyplatform.studies.models import ProtocolVersion, Study


class ClassificationRun(LeaseFields):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        # Finished early on purpose: the budget was reached. Labels so far are kept.
        STOPPED = "stopped", "Stopped (budget reached)"
        FAILED = "failed", "Failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="classification_runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    protocol_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="+"
    )
    # What the researcher asked for: classifiers, selection, budget, concurrency, text mode.
    params = models.JSONField(default=dict, blank=True)
    # The definitions the run used (summaries with their hashes), so a run says what it asked.
    classifiers = models.JSONField(default=list, blank=True)
    progress = models.PositiveSmallIntegerField(default=0, help_text="0-100")
    conversations = models.PositiveIntegerField(default=0)
    # Participants left out because their consent does not allow sending chats to a judge.
    skipped_participants = models.PositiveIntegerField(default=0)
    units_total = models.PositiveIntegerField(default=0)
    units_done = models.PositiveIntegerField(default=0)
    # Cost so far: every request sent to the judge (retries included) and its tokens.
    judge_calls = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    # Judge calls a cached label made unnecessary.
    cache_hits = models.PositiveIntegerField(default=0)
    gated_out = models.PositiveIntegerField(default=0)
    unparseable = models.PositiveIntegerField(default=0)
    # Targets the judge could not answer after retries (left unlabelled; a later run tries again).
    judge_errors = models.PositiveIntegerField(default=0)
    recent_errors = models.JSONField(default=list, blank=True)
    stop_reason = models.CharField(max_length=300, blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["study", "-created_at"], name="classification_run_study_idx")
        ]

    def __str__(self) -> str:
        return f"classification run {self.pk} of {self.study.slug} ({self.status})"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ClassifierLabel(models.Model):
    """One classifier version's answer, by one judge model, about one target.

    The target is a message (message scopes, exchanges and windows end at one) or a whole
    conversation (`message` empty). `target_key` ("m:<id>" or "c:<id>") makes the pair unique
    without a nullable column in the constraint.
    """

    class Outcome(models.TextChoices):
        LABEL = "label", "Labelled"
        # The judge answered, twice, with something that is not one of the levels.
        UNPARSEABLE = "unparseable", "Unparseable judge answer"
        # The parent classifier's answer did not open this one (no judge call made).
        GATED_OUT = "gated_out", "Not asked (gate closed)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    target_key = models.CharField(max_length=30)
    scope = models.CharField(max_length=20)
    classifier_key = models.CharField(max_length=40)
    classifier_version = models.PositiveIntegerField()
    definition_hash = models.CharField(max_length=64)
    judge_endpoint = models.CharField(max_length=40)
    judge_model = models.CharField(max_length=200)
    # Keyed hash (HMAC) of exactly what was sent: a plain hash of a short message could be
    # reversed by guessing, and chat text is otherwise only stored encrypted.
    content_hash = models.CharField(max_length=64)
    anonymized = models.BooleanField(default=False)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    label = models.CharField(max_length=30, blank=True, default="")
    judge_calls = models.PositiveSmallIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # Copied from another target's label with the same definition, judge and content.
    from_cache = models.BooleanField(default=False)
    run = models.ForeignKey(
        ClassificationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="labels"
    )
    labelled_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "classifier_key",
                    "classifier_version",
                    "judge_endpoint",
                    "judge_model",
                    "target_key",
                ],
                name="unique_label_per_target",
            )
        ]
        indexes = [
            models.Index(
                fields=["definition_hash", "judge_endpoint", "judge_model", "content_hash"],
                name="classifier_label_cache_idx",
            ),
            models.Index(
                fields=["study", "classifier_key", "classifier_version"],
                name="classifier_label_study_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.classifier_key}@{self.classifier_version} {self.target_key}: {self.label}"


class CodingSample(models.Model):
    """A random sample of one classifier version's labelled units for people to code, blind.

    Drawn once (seeded, the seed stored) and kept as rows, so every coder sees the same units in
    the same order. The classifier's labels stay on ClassifierLabel and are never shown on the
    coding page; agreement is computed when someone asks for it.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="coding_samples")
    classifier_key = models.CharField(max_length=40)
    classifier_version = models.PositiveIntegerField()
    judge_endpoint = models.CharField(max_length=40)
    judge_model = models.CharField(max_length=200)
    # The definition as the protocol held it when the sample was drawn (scope, question,
    # levels): what coders are asked, and what the agreement figures compare against.
    definition = models.JSONField(default=dict)
    size = models.PositiveIntegerField()
    seed = models.PositiveBigIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"coding sample {self.pk} of {self.classifier_key}@{self.classifier_version}"

    @property
    def ref(self) -> str:
        return f"{self.classifier_key}@{self.classifier_version}"

    @property
    def level_codes(self) -> list[str]:
        return [level["code"] for level in self.definition.get("levels", [])]


class CodingItem(models.Model):
    """One unit of a coding sample, in the order coders see it. It points at the classifier's
    label (which says which message or conversation, and whether the judge read anonymized
    text); withdrawal with deletion removes the label, and with it the item and its codes."""

    sample = models.ForeignKey(CodingSample, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    classifier_label = models.ForeignKey(
        ClassifierLabel, on_delete=models.CASCADE, related_name="coding_items"
    )

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["sample", "position"], name="unique_coding_position"),
            models.UniqueConstraint(
                fields=["sample", "classifier_label"], name="unique_coding_label"
            ),
        ]

    def __str__(self) -> str:
        return f"item {self.position} of coding sample {self.sample_id}"


class HumanLabel(models.Model):
    """A coder's answer for one unit of a sample (one per coder and unit; recoding replaces it)."""

    item = models.ForeignKey(CodingItem, on_delete=models.CASCADE, related_name="human_labels")
    coder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=30)
    labelled_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "coder"], name="unique_human_label")]

    def __str__(self) -> str:
        return f"{self.coder_id} on item {self.item_id}: {self.label}"
