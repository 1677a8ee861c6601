"""Withdrawal: "stop and keep" or "stop and delete", in one transaction, always audited."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from studyplatform.core.audit import audit_record
from studyplatform.core.events import ParticipantContentDeletion, ParticipantWithdrew, publish
from studyplatform.core.gate_epoch import gate_bump

from ..models import ConsentRecord, Identity, Participant
from .data_download import remove_download_file

log = logging.getLogger(__name__)


class WithdrawalError(ValueError):
    pass


@transaction.atomic
def participant_withdraw(
    *, participant: Participant, mode: str, by: str, actor: Any = None, reason: str = ""
) -> Participant:
    """Withdraw a participant. `by` is "participant" or "researcher" (on the person's request).

    delete: messages, responses, imported history, screener answers, signatures and the vault
    row go in one transaction; what remains is the pseudonymous participant row (status and mode,
    so exports exclude them and invitations stop), the allocation (the randomization record must
    stay complete) and a content-free audit event.
    """
    participant = Participant.objects.select_for_update().get(pk=participant.pk)
    if mode not in Participant.Withdrawal.values:
        raise WithdrawalError(f"unknown withdrawal mode {mode!r}")
    if participant.status == Participant.Status.WITHDRAWN:
        raise WithdrawalError("already withdrawn; a withdrawal cannot be changed or undone")
    now = timezone.now()
    participant.status = Participant.Status.WITHDRAWN
    participant.withdrawn_at = now
    participant.withdrawal_mode = mode
    participant.withdrawal_by = by
    participant.return_token_digest = ""
    participant.password_hash = ""
    counts: dict[str, int] = {}
    participant.save()
    # Every browser's cached participant gate (participants.session) checks again.
    gate_bump(participant_id=participant.pk)
    # Every withdrawal, inside this transaction: surveys cancel pending invitations.
    publish(ParticipantWithdrew(participant=participant, mode=mode))
    if mode == Participant.Withdrawal.DELETE:
        participant.screener_answers = {}
        # Apps holding the participant's content (chat, exports, surveys) delete it here, in
        # this transaction, and report counts for the audit event.
        for deleted in publish(ParticipantContentDeletion(participant=participant)):
            counts.update(deleted)
        counts["identity"] = Identity.objects.filter(participant=participant).delete()[0]
        counts["signatures"] = ConsentRecord.objects.filter(participant=participant).update(
            signature_name=""
        )
        for download in participant.downloads.all():
            remove_download_file(download.file_name)
        counts["downloads"] = participant.downloads.all().delete()[0]
        participant.signin_links.all().delete()
    participant.save()
    audit_record(
        actor=actor if actor is not None else f"participant {participant.code}",
        action="participant.withdraw",
        target=participant,
        study_slug=participant.study.slug,
        data={"mode": mode, "by": by, "deleted": counts, "reason": reason[:200]},
    )
    return participant
