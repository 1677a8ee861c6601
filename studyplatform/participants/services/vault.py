"""The identity vault: the one table with direct identifiers, read only through audited views."""

from __future__ import annotations

from studyplatform.core.audit import audit_record

from ..models import Identity, Participant


def identity_view(*, participant: Participant, actor) -> Identity | None:
    """Read a participant's vault row on behalf of a researcher; always audited."""
    identity = Identity.objects.filter(participant=participant).first()
    audit_record(
        actor=actor, action="vault.view", target=participant, study_slug=participant.study.slug
    )
    return identity
