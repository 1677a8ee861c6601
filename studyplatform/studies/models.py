"""The study protocol: studies, immutable protocol versions, arms, consent documents, members.

The protocol document (the YAML format in docs/protocol.md) is the source of truth and is stored
whole in each ProtocolVersion. Arms and consent documents are materialised from it as rows so
other tables can reference them (allocations point at an arm; consent records at a document).
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import translation

from studyplatform.core.i18n import localized

from .roles import Perm, Role, role_allows


def _new_seed() -> str:
    return secrets.token_hex(16)


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PILOTING = "piloting", "Piloting"
        RECRUITING = "recruiting", "Recruiting"
        RUNNING = "running", "Running (recruitment closed)"
        CLOSED = "closed", "Closed"

    # Allowed lifecycle moves. Piloting may go back to draft (fix and re-pilot); a launched study
    # never returns to piloting because real participants' data would mix with pilot data.
    TRANSITIONS = {
        Status.DRAFT: {Status.PILOTING},
        Status.PILOTING: {Status.DRAFT, Status.RECRUITING},
        Status.RECRUITING: {Status.RUNNING, Status.CLOSED},
        Status.RUNNING: {Status.RECRUITING, Status.CLOSED},
        Status.CLOSED: set(),
    }
    LIVE = {Status.PILOTING, Status.RECRUITING, Status.RUNNING}

    slug = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    timezone = models.CharField(max_length=64, default="UTC")
    target_enrollment = models.PositiveIntegerField(null=True, blank=True)
    duration_days = models.PositiveIntegerField()
    # Seed for reproducible allocation sequences; secret, never shown to monitors.
    allocation_seed = models.CharField(max_length=64, default=_new_seed, editable=False)
    current_version = models.ForeignKey(
        "ProtocolVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When the study moved to closed: the protocol's retention delay counts from here.
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.title

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE

    @property
    def protocol(self) -> dict:
        return self.current_version.content if self.current_version_id else {}

    def title_in(self, language: str | None = None) -> str:
        """The title a participant sees: the protocol's title in `language` (default: the
        active language, which the participant pages and emails set to the participant's), its
        English text when that language has none, else the stored title.

        `title` holds the English (or only) title for researchers' pages; the protocol may give
        a title per language, so everything participant-facing reads it through here.
        """
        wanted = language or translation.get_language()
        meta = self.protocol.get("study") or {}
        return localized(meta.get("title"), wanted, default=self.title) or self.title

    @property
    def localized_title(self) -> str:
        """`title_in` the active language, for templates."""
        return self.title_in()

    def can_move_to(self, status: str) -> bool:
        return status in self.TRANSITIONS[self.Status(self.status)]


class ProtocolVersion(models.Model):
    """One immutable version of a study's protocol document."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    content = models.JSONField()
    content_hash = models.CharField(max_length=64)
    change_note = models.TextField(blank=True)
    # The study status when this version was created: tells reviewers which versions governed
    # real data collection.
    status_at_creation = models.CharField(max_length=12, choices=Study.Status.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["study", "number"], name="unique_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.study.slug} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Protocol versions are immutable; create a new version instead.")
        super().save(*args, **kwargs)


class Arm(models.Model):
    """A condition: a pinned model, system prompt and generation parameters.

    One row per (study, key), kept in step with the current protocol version; the exact
    configuration in force at any time is in that version's content.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="arms")
    key = models.SlugField(max_length=40)
    label = models.JSONField(default=dict, help_text="Participant-facing label per language.")
    weight = models.PositiveIntegerField(default=1)
    # A registered model endpoint (core/model_endpoints.py), never a URL: where the endpoint is
    # and which key it uses is platform configuration, resolved at every call.
    endpoint = models.CharField(max_length=40)
    # The endpoint's kind when this arm was saved; the participant UI labels simulated arms by it,
    # and a call is refused if the endpoint's kind has changed since.
    provider = models.CharField(max_length=20)
    model_name = models.CharField(max_length=200)
    system_prompt = models.TextField(blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    context_tokens = models.PositiveIntegerField(default=8192)
    is_active = models.BooleanField(
        default=True, help_text="False once a later protocol version removed the arm."
    )

    class Meta:
        ordering = ["study", "key"]
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="unique_arm_key")]

    def __str__(self) -> str:
        return f"{self.study.slug}/{self.key}"

    def label_for(self, language: str) -> str:
        return localized(self.label, language) or self.key

    @property
    def is_simulated(self) -> bool:
        return self.provider == "simulated"


class ConsentDocument(models.Model):
    """One version of the consent form in one language. Immutable once created."""

    class Signature(models.TextChoices):
        CHECKBOX = "checkbox", "Checkbox"
        TYPED_NAME = "typed_name", "Typed name"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="consent_documents")
    version = models.PositiveIntegerField()
    language = models.CharField(max_length=10)
    title = models.CharField(max_length=200)
    body = models.TextField(help_text="Markdown.")
    checkboxes = models.JSONField(default=list)
    signature = models.CharField(max_length=12, choices=Signature.choices)
    text_hash = models.CharField(max_length=64)
    protocol_version = models.ForeignKey(
        ProtocolVersion, on_delete=models.PROTECT, related_name="consent_documents"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "language", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "language", "version"], name="unique_consent_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.study.slug} consent v{self.version} ({self.language})"

    @property
    def required_keys(self) -> list[str]:
        return [c["key"] for c in self.checkboxes if c.get("required")]

    @property
    def optional_keys(self) -> list[str]:
        return [c["key"] for c in self.checkboxes if not c.get("required")]


class Membership(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_memberships"
    )
    role = models.CharField(max_length=20, choices=[(r.value, r.value) for r in Role])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "role", "user"]
        constraints = [
            models.UniqueConstraint(fields=["study", "user", "role"], name="unique_membership_role")
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.study.slug}"

    def allows(self, perm: Perm) -> bool:
        return role_allows(self.role, perm)


class StudyInvitation(models.Model):
    """An offer of a role in a study to whoever reads mail at `email`.

    Only a digest of the emailed token is stored. The invitation grants nothing by itself: the
    role is created when a signed-in account that verified this same address opens the link and
    accepts (never matched by username, never to an unverified account).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REVOKED = "revoked", "Revoked"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="team_invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=20, choices=[(r.value, r.value) for r in Role])
    token_digest = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["study", "status"])]

    def __str__(self) -> str:
        return f"{self.email} invited as {self.role} to {self.study.slug} ({self.status})"

    def is_open(self, now) -> bool:
        return self.status == self.Status.PENDING and now < self.expires_at
