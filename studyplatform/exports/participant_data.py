"""What the exports app contributes to a participant's withdrawal with deletion.

Subscribed to ``core.events.ParticipantContentDeletion`` from ``ExportsConfig.ready()``, like the
chat app's deleter:
the withdrawal service (participants) calls it inside its transaction without importing
anything from exports, so the dependency runs one way only (exports -> participants). Every
finished export whose zip holds the participant is revoked and rebuilt without them.
"""

from __future__ import annotations

from studyplatform.core.events import ParticipantContentDeletion

from .services.lifecycle import exports_revoke_for_participant


def exports_delete(event: ParticipantContentDeletion) -> dict[str, int]:
    """Revoke the built exports that contain the participant; return how many."""
    return {"exports_revoked": exports_revoke_for_participant(participant=event.participant)}
