"""Retention of raw chat text after a study closes (protocol section `retention`).

With `retention: {chat_text_after_close: delete, after_days: N}`, a daily beat task removes the
words of the study's chats N days after the study closed, keeping the pseudonymous metadata so
usage analyses still work. Exactly what goes:

- every message's text (user and assistant, live and imported): `content` becomes empty;
  the row stays with its role, status, timestamps, token counts, latency, model, finish reason
  and tree links, plus `text_chars` (the text's length) and `text_deleted_at`;
- conversation titles (written from the first message, so they are chat text);
- the participants' memory notes (model memory built from their chats): the rows are deleted;
- the excerpts of chat safety alerts; the alert rows (category, severity, times, who acted
  and the reviewers' own notes) stay;
- kept voice recordings (rows and their encrypted files); the messages keep their modality
  and audio durations.

Survey answers are not chat text and are kept. Export zips built earlier expire on their own
(EXPORT_EXPIRY_DAYS). `keep`, or no `retention` section, keeps the text.

Idempotent: each message is marked when its text goes, so a second sweep (or one resumed after a
crash, batches commit one at a time) changes nothing and writes no audit event.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from studyplatform.core.audit import audit_record
from studyplatform.core.models import AuditEvent
from studyplatform.safety.models import SafetyAlert
from studyplatform.studies.models import Study

from .models import Conversation, MemoryNote, Message, VoiceClip
from .voice import clips_delete

log = logging.getLogger(__name__)

BATCH = 500
AUDIT_ACTION = "chat.retention_delete"


@dataclass(frozen=True)
class RetentionPolicy:
    delete: bool
    after_days: int


def retention_policy(protocol: dict) -> RetentionPolicy:
    """The study's policy; anything but a valid `delete` keeps the text (the validator refuses
    invalid sections, but a stored protocol may predate them)."""
    section = protocol.get("retention") if isinstance(protocol, dict) else None
    section = section if isinstance(section, dict) else {}
    days = section.get("after_days")
    if section.get("chat_text_after_close") != "delete" or isinstance(days, bool):
        return RetentionPolicy(delete=False, after_days=0)
    if not isinstance(days, int) or days < 0:
        return RetentionPolicy(delete=False, after_days=0)
    return RetentionPolicy(delete=True, after_days=min(days, 3650))


def retention_due_at(study: Study) -> dt.datetime | None:
    """When the chat text of `study` is (or was) due for deletion; None when it is kept or the
    study has not closed yet."""
    policy = retention_policy(study.protocol)
    if not policy.delete or study.status != Study.Status.CLOSED or study.closed_at is None:
        return None
    return study.closed_at + dt.timedelta(days=policy.after_days)


@dataclass(frozen=True)
class RetentionStatus:
    policy: RetentionPolicy
    due_at: dt.datetime | None
    done: AuditEvent | None


def retention_status(study: Study) -> RetentionStatus:
    """What the console shows: the policy, when deletion is due, and the last deletion."""
    done = (
        AuditEvent.objects.filter(
            action=AUDIT_ACTION, target_type="studies.study", target_id=str(study.pk)
        )
        .order_by("-created_at", "-id")
        .first()
    )
    return RetentionStatus(
        policy=retention_policy(study.protocol), due_at=retention_due_at(study), done=done
    )


def _delete_message_batch(study: Study, now: dt.datetime) -> int:
    with transaction.atomic():
        batch = list(
            Message.objects.select_for_update()
            .filter(participant__study=study, text_deleted_at__isnull=True)
            .order_by("pk")[:BATCH]
        )
        for message in batch:
            message.text_chars = len(message.content or "")
            message.content = ""
            message.text_deleted_at = now
        Message.objects.bulk_update(batch, ["content", "text_chars", "text_deleted_at"])
        return len(batch)


def chat_text_delete(*, study: Study, now: dt.datetime | None = None) -> dict[str, int]:
    """Remove the chat text of a closed study whose retention delay has passed; returns what
    was removed (all zero when there was nothing left to remove)."""
    now = now or timezone.now()
    due = retention_due_at(study)
    if due is None or due > now:
        return {
            "messages": 0,
            "conversation_titles": 0,
            "memory_notes": 0,
            "alert_excerpts": 0,
            "voice_clips": 0,
        }
    messages = 0
    while n := _delete_message_batch(study, now):
        messages += n
    with transaction.atomic():
        # Titles and excerpts: an empty value encrypts to a non-empty token, so these cannot be
        # filtered on "not yet empty"; they are counted only when messages went in this run,
        # which is also when they were written (a second run finds no messages and writes none).
        conversations = Conversation.objects.filter(participant__study=study)
        alerts = SafetyAlert.objects.filter(study=study, source="chat")
        counts = {
            "messages": messages,
            "conversation_titles": conversations.count() if messages else 0,
            "memory_notes": MemoryNote.objects.filter(participant__study=study).delete()[0],
            "alert_excerpts": alerts.count() if messages else 0,
            # Kept voice recordings are chat content too (the words, spoken).
            "voice_clips": clips_delete(VoiceClip.objects.filter(participant__study=study)),
        }
        if messages:
            conversations.update(title="")
            alerts.update(excerpt="")
        if any(counts.values()):
            audit_record(
                actor=None,
                action=AUDIT_ACTION,
                target=study,
                study_slug=study.slug,
                data={
                    **counts,
                    "closed_at": study.closed_at.isoformat(),
                    "after_days": retention_policy(study.protocol).after_days,
                },
            )
    return counts


def chat_text_retention_sweep(*, now: dt.datetime | None = None) -> dict[str, dict[str, int]]:
    """Apply every closed study's retention policy whose delay has passed."""
    now = now or timezone.now()
    results = {}
    closed = Study.objects.filter(status=Study.Status.CLOSED, closed_at__lte=now).select_related(
        "current_version"
    )
    for study in closed:
        due = retention_due_at(study)
        if due is None or due > now:
            continue
        counts = chat_text_delete(study=study, now=now)
        if any(counts.values()):
            log.info("retention removed chat text of %s: %s", study.slug, counts)
            results[study.slug] = counts
    return results
