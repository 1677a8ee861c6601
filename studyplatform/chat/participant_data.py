"""What the chat app contributes to a participant's withdrawal and "download my data".

Subscribed to the ``core.events`` withdrawal and download events from ``ChatConfig.ready()``:
withdrawal with deletion removes every conversation the participant has (live chats and imported
history alike; messages cascade), and the data download lists their conversations and messages,
imported ones included, and carries the voice recordings the platform kept (only kept when their
consent allowed it), decrypted, under ``voice/``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from studyplatform.core.events import (
    ParticipantContentDeletion,
    ParticipantDownloadFilesRequested,
    ParticipantDownloadRequested,
)
from studyplatform.core.filecrypt import decrypt_from_path
from studyplatform.safety.services import participant_alerts_scrub

from .models import Conversation, MemoryNote, Message, VoiceClip
from .voice import ACCEPTED_TYPES, clips_delete, voice_dir


def chat_delete(event: ParticipantContentDeletion) -> dict[str, int]:
    """Delete the participant's conversations and their messages; return what went."""
    participant = event.participant
    # Counted before deleting: the collector's per-model numbers would also include rows of
    # other models it cascades to, and the audit event wants exactly these two.
    messages = Message.objects.filter(participant=participant).count()
    conversations = Conversation.objects.filter(participant=participant).count()
    # Kept voice recordings first: their rows would cascade with the messages, but the
    # encrypted files on disk must go too.
    clips = clips_delete(VoiceClip.objects.filter(participant=participant))
    Conversation.objects.filter(participant=participant).delete()
    # A message always belongs to one of the participant's conversations, so this is a no-op
    # kept as a guard: no message text may outlive a deletion request.
    Message.objects.filter(participant=participant).delete()
    memory = MemoryNote.objects.filter(participant=participant).delete()[0]
    # Safety alerts stay as a record that an alert was raised and handled, but without any of
    # the participant's words: the excerpt and the reviewers' notes (which may quote them) go.
    alerts = participant_alerts_scrub(participant=participant)
    return {
        "conversations": conversations,
        "messages": messages,
        "memory_notes": memory,
        "alerts_scrubbed": alerts,
        "voice_clips": clips,
    }


def chat_download(event: ParticipantDownloadRequested) -> dict[str, list[dict[str, Any]]]:
    """The participant's conversations and messages as rows for their data download.

    The model that answered names the arm (each arm pins one model), so live replies carry it
    only when the protocol discloses the allocation to the participant; imported history is the
    participant's own record from elsewhere and keeps its model names.
    """
    participant = event.participant
    allocation = participant.study.protocol.get("allocation", {})
    disclose = bool(allocation.get("disclose_to_participant", False))
    conversations = [
        {
            "conversation_id": c.pk,
            "title": c.title,
            "created_at": c.created_at.isoformat(),
            "updated_at": c.updated_at.isoformat(),
            "imported": c.imported,
            "import_source": c.import_source,
            "active_leaf_id": c.active_leaf_id,
        }
        for c in Conversation.objects.filter(participant=participant).order_by("created_at", "pk")
    ]
    messages = [
        {
            "conversation_id": m.conversation_id,
            "message_id": m.pk,
            "parent_id": m.parent_id,
            "role": m.role,
            "content": m.content,
            "status": m.status,
            "created_at": m.created_at.isoformat(),
            "imported": m.imported,
            "model_reported": m.model_reported if (disclose or m.imported) else "",
            "content_type": m.content_type,
            "modality": m.modality,
            "audio_ms": m.audio_ms,
        }
        for m in Message.objects.filter(participant=participant).order_by(
            "conversation_id", "created_at", "pk"
        )
    ]
    tables = {"conversations": conversations, "messages": messages}
    recordings = [
        {
            "message_id": clip.message_id,
            "conversation_id": clip.message.conversation_id,
            "file": _clip_archive_name(clip),
            "content_type": clip.content_type,
            "duration_ms": clip.duration_ms,
            "size_bytes": clip.size_bytes,
            "recorded_at": clip.created_at.isoformat(),
        }
        for clip in _clips(participant)
    ]
    # Only a participant whose consent let the platform keep audio has any; the others get no
    # empty table.
    if recordings:
        tables["voice_recordings"] = recordings
    return tables


def _clips(participant):
    return (
        VoiceClip.objects.filter(participant=participant)
        .select_related("message")
        .order_by("created_at", "pk")
    )


def _clip_archive_name(clip: VoiceClip) -> str:
    return f"voice/message-{clip.message_id}.{ACCEPTED_TYPES.get(clip.content_type, 'bin')}"


def _clip_bytes(file_name: str) -> bytes:
    return b"".join(decrypt_from_path(voice_dir() / file_name))


def chat_download_files(
    event: ParticipantDownloadFilesRequested,
) -> dict[str, Callable[[], bytes]]:
    """The participant's kept voice recordings, decrypted one at a time as the archive is
    written; named after the message they were transcribed into (the voice_recordings table
    links the two)."""
    return {
        _clip_archive_name(clip): partial(_clip_bytes, clip.file_name)
        for clip in _clips(event.participant)
    }
