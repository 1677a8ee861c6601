"""Researcher account state that Django's User does not hold: which email address an account
has proved it receives mail at."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class EmailVerification(models.Model):
    """The address this account proved it reads (by a signed link, an admin, or the migration).

    An account counts as verified only while `email` still equals the user's current address
    (case-insensitively): if an admin changes the address, the proof no longer applies.
    """

    class Method(models.TextChoices):
        LINK = "link", "Clicked the emailed link"
        ADMIN = "admin", "Marked by a platform admin"
        COMMAND = "command", "Set by a management command"
        MIGRATION = "migration", "Held a study role when verification was introduced"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_verification"
    )
    email = models.EmailField(max_length=254)
    method = models.CharField(max_length=12, choices=Method.choices)
    verified_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.user} verified {self.email} ({self.method})"

    def covers(self, email: str) -> bool:
        return bool(email) and self.email.lower() == email.lower()
