"""Cross-cutting records: the audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Who did what to which object, when. Append-only: written by services, never edited.

    `study_slug` is denormalised so the log stays readable after a study is deleted, and so the
    core app does not depend on the studies app.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    # A readable label that survives deletion of the actor ("alice", "participant P-7Q2K",
    # "system").
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=80, db_index=True)
    target_type = models.CharField(max_length=80, blank=True)
    target_id = models.CharField(max_length=80, blank=True)
    study_slug = models.SlugField(max_length=80, blank=True, db_index=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit events are append-only and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only and cannot be deleted.")


class ModelEndpoint(models.Model):
    """A model server registered by a platform admin (see core/model_endpoints.py).

    Protocols name an endpoint and a model; they never carry a URL or a key. Which server is
    called, with which key, is decided here by the operator. The key itself is never stored:
    `api_key_env` names the environment variable that holds it, read at call time.
    """

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic"
        SIMULATED = "simulated", "Simulated (no server)"

    name = models.SlugField(
        max_length=40,
        unique=True,
        help_text="What protocols write as model.endpoint (lowercase letters, digits, hyphens).",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.URLField(
        max_length=300,
        blank=True,
        help_text="API root, e.g. http://gpu-1:8000/v1 for vLLM; empty for the vendor's own.",
    )
    api_key_env = models.CharField(
        "API key environment variable",
        max_length=100,
        blank=True,
        help_text="The NAME of the environment variable holding the key, never the key.",
    )
    requires_api_key = models.BooleanField(
        default=True, help_text="Untick for local servers that accept any key (vLLM, Ollama)."
    )
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        help_text="The model names protocols may use on this endpoint (exact names).",
    )
    enabled = models.BooleanField(default=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from .model_endpoints import endpoint_spec_errors

        errors = endpoint_spec_errors(
            name=self.name,
            kind=self.kind,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            requires_api_key=self.requires_api_key,
            models=self.allowed_models,
            from_admin=True,
        )
        if "models" in errors:
            errors["allowed_models"] = errors.pop("models")
        if errors:
            from django.core.exceptions import ValidationError

            raise ValidationError(errors)
