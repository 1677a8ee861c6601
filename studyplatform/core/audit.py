"""Writing audit events. Services call `audit_record` for every sensitive action."""

from __future__ import annotations

from typing import Any

from django.db import models

from .models import AuditEvent


def _actor_label(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return getattr(actor, "get_username", lambda: str(actor))()


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model | None = None,
    study_slug: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. `actor` is a user, a label string, or None for the system."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_label=_actor_label(actor)[:150],
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        study_slug=study_slug,
        data=data or {},
    )
