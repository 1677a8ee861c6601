"""What the exports app contributes to a participant's withdrawal with deletion.

Registered explicitly from ``ExportsConfig.ready()`` as a content deleter, like the chat app's:
the withdrawal service (participants) calls it inside its transaction without importing
anything from exports, so the dependency runs one way only (exports -> participants). Every
finished export whose zip holds the participant is revoked and rebuilt without them.
"""

from __future__ import annotations

from studyplatform.participants.models import Participant
from studyplatform.participants.services import register_content_deleter

from .services.lifecycle import exports_revoke_for_participant


@register_content_deleter
def exports_delete(participant: Participant) -> dict[str, int]:
    """Revoke the built exports that contain the participant; return how many."""
    return {"exports_revoked": exports_revoke_for_participant(participant=participant)}
