"""Storing a participant's ChatGPT history: the parsed export becomes Conversation and Message rows.

The pure parser (``studyplatform.chat.importers``) decides what a file means; this service
decides whether it may be stored (consent and status), stores it in one transaction, skips
conversations imported before (by fingerprint, so re-uploading a newer export only adds what is
new), and records a content-free audit event. See ``docs/chatgpt_import.md`` for the format.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from studyplatform.chat.importers import (
    ImportFormatError,
    Limits,
    ParsedConversation,
    ParsedExport,
    ParsedMessage,
    parse_export,
)
from studyplatform.chat.models import Conversation, Message
from studyplatform.core.audit import audit_record
from studyplatform.participants.models import Participant
from studyplatform.participants.services import latest_consent

__all__ = [
    "IMPORT_SOURCE",
    "ImportFormatError",
    "ImportRefused",
    "ImportResult",
    "chatgpt_import",
    "chatgpt_import_refusal",
]

IMPORT_SOURCE = "chatgpt"
CONSENT_KEY = "import_history"
# Rows per INSERT/UPDATE statement: large exports hold tens of thousands of messages.
BATCH_SIZE = 500

REFUSALS = {
    "consent": "the participant's consent does not include importing chat history",
    "withdrawn": "the participant has withdrawn from the study",
    "inactive": "the participant is no longer active in the study",
}


class ImportRefused(Exception):
    """The participant may not import history; ``code`` is one of ``REFUSALS``."""

    def __init__(self, code: str):
        super().__init__(REFUSALS.get(code, code))
        self.code = code


@dataclass(frozen=True)
class ImportResult:
    conversations: int  # conversations created (or, in a dry run, that would be)
    messages: int  # counted messages (user/assistant with text) in those conversations
    skipped: int  # conversations already imported before, left as they are

    def as_line(self) -> str:
        """The CLI's stable output line."""
        return f"imported={self.conversations} messages={self.messages} skipped={self.skipped}"


def chatgpt_import_refusal(participant: Participant) -> ImportRefused | None:
    """Why this participant may not import history now, or None when they may."""
    if participant.status == Participant.Status.WITHDRAWN:
        return ImportRefused("withdrawn")
    if not participant.is_active:
        return ImportRefused("inactive")
    consent = latest_consent(participant)
    if consent is None or not consent.allows(CONSENT_KEY):
        return ImportRefused("consent")
    return None


def chatgpt_import(
    *,
    participant: Participant | None,
    source: bytes | str | Path | BinaryIO,
    limits: Limits | None = None,
    dry_run: bool = False,
    actor: Any = None,
) -> ImportResult:
    """Import a ChatGPT export (zip or conversations.json) into ``participant``'s chat history.

    Raises :class:`ImportRefused` when consent or status forbid it (checked before the file is
    read) and :class:`ImportFormatError` when the file is unusable; in both cases nothing is
    written. ``dry_run`` parses and counts without writing; ``participant`` may then be None
    (nothing counts as already imported). ``actor`` is who the audit event names: a researcher
    user or label, defaulting to the participant.
    """
    if participant is None and not dry_run:
        raise ValueError("a participant is needed unless dry_run is set")
    if participant is not None:
        refusal = chatgpt_import_refusal(participant)
        if refusal is not None:
            raise refusal
    export = parse_export(source, limits=limits or Limits())
    if dry_run:
        existing = _existing_fingerprints(participant, export) if participant else set()
        new = [c for c in export.conversations if c.fingerprint not in existing]
        return _result(new, skipped=len(export.conversations) - len(new))
    assert participant is not None  # for type checkers: guarded above
    return _store(participant=participant, export=export, actor=actor)


@transaction.atomic
def _store(*, participant: Participant, export: ParsedExport, actor: Any) -> ImportResult:
    # Lock the participant row: two uploads of the same export at once would otherwise both see
    # "not imported yet" and the second would fail on the unique constraint. Re-checking status
    # under the lock also closes the gap with a withdrawal running at the same moment.
    participant = (
        Participant.objects.select_for_update(of=("self",))
        .select_related("study", "allocation__arm")
        .get(pk=participant.pk)
    )
    refusal = chatgpt_import_refusal(participant)
    if refusal is not None:
        raise refusal
    existing = _existing_fingerprints(participant, export)
    new = [c for c in export.conversations if c.fingerprint not in existing]
    now = timezone.now()
    arm = participant.allocation.arm

    conversations = [_conversation_row(participant, arm, parsed, now) for parsed in new]
    _insert(Conversation, conversations)

    # All messages go in with no parent first, then parents are linked by primary key: one
    # pass whatever the tree's depth (a long linear chat is thousands of levels deep, so
    # inserting level by level would cost one query per turn).
    rows: list[Message] = []
    links: list[tuple[Message, Message]] = []  # (row, its parent's row once created)
    by_node: list[dict[str, Message]] = []  # per conversation: node id -> row
    for conversation, parsed in zip(conversations, new, strict=True):
        nodes: dict[str, Message] = {}
        for parsed_message in parsed.messages:
            row = _message_row(participant, conversation, parsed, parsed_message, now)
            nodes[parsed_message.external_id] = row
            rows.append(row)
            if parsed_message.parent_external_id is not None:
                # Tree order puts a parent before its children, so it is already in `nodes`.
                links.append((row, nodes[parsed_message.parent_external_id]))
        by_node.append(nodes)
    _insert(Message, rows)
    for row, parent in links:
        row.parent = parent
    Message.objects.bulk_update([row for row, _ in links], ["parent"], batch_size=BATCH_SIZE)

    with_leaf = []
    for conversation, parsed, nodes in zip(conversations, new, by_node, strict=True):
        if parsed.active_leaf_id is not None and parsed.active_leaf_id in nodes:
            conversation.active_leaf = nodes[parsed.active_leaf_id]
            with_leaf.append(conversation)
    Conversation.objects.bulk_update(with_leaf, ["active_leaf"], batch_size=BATCH_SIZE)

    result = _result(new, skipped=len(export.conversations) - len(new))
    audit_record(
        actor=actor if actor is not None else f"participant {participant.code}",
        action="chat.import",
        target=participant,
        study_slug=participant.study.slug,
        data={
            "source": IMPORT_SOURCE,
            "conversations": result.conversations,
            "messages": result.messages,
            "skipped": result.skipped,
        },
    )
    return result


def _result(new: list[ParsedConversation], *, skipped: int) -> ImportResult:
    # The parser's counting rule, so the numbers match ParsedExport.counts() for new rows.
    return ImportResult(
        conversations=len(new),
        messages=sum(c.message_count for c in new),
        skipped=skipped,
    )


def _existing_fingerprints(participant: Participant, export: ParsedExport) -> set[str]:
    fingerprints = [c.fingerprint for c in export.conversations]
    found: set[str] = set()
    # Chunked so an export with 100,000 conversations stays under SQLite's parameter limit.
    for start in range(0, len(fingerprints), BATCH_SIZE):
        found.update(
            Conversation.objects.filter(
                participant=participant,
                external_id__in=fingerprints[start : start + BATCH_SIZE],
            ).values_list("external_id", flat=True)
        )
    return found


def _conversation_row(
    participant: Participant, arm: Any, parsed: ParsedConversation, now: dt.datetime
) -> Conversation:
    created = parsed.create_time or now
    return Conversation(
        participant=participant,
        arm=arm,
        title=parsed.title,
        created_at=created,
        updated_at=parsed.update_time or parsed.create_time or now,
        imported=True,
        import_source=IMPORT_SOURCE,
        external_id=parsed.fingerprint,
        has_custom_instructions=parsed.has_custom_instructions,
    )


def _message_row(
    participant: Participant,
    conversation: Conversation,
    parsed: ParsedConversation,
    message: ParsedMessage,
    now: dt.datetime,
) -> Message:
    model = _cut(message.model_slug or "", 200)
    return Message(
        conversation=conversation,
        participant=participant,
        role=_cut(message.role, 10),
        content=message_content(message),
        status=Message.Status.COMPLETE,
        created_at=message.create_time or parsed.create_time or now,
        imported=True,
        external_id=message.fingerprint,
        model_reported=model,
        model_requested=model,
        finish_reason=_cut(message.finish_reason or "", 20),
        content_type=_cut(message.content_type, 40),
    )


def message_content(message: ParsedMessage) -> str:
    """The stored text: the message's text, then a placeholder line per non-text part."""
    return "\n".join(part for part in (message.text, *message.parts_meta) if part)


def _cut(value: str, length: int) -> str:
    # Roles, content types and model names are untrusted strings; the columns are bounded.
    return value[:length]


def _insert(model: type[Model], rows: list[Any]) -> None:
    if connection.features.can_return_rows_from_bulk_insert:
        model.objects.bulk_create(rows, batch_size=BATCH_SIZE)
        return
    # A backend that cannot return primary keys from a bulk insert: parents need them.
    for row in rows:
        row.save(force_insert=True)
