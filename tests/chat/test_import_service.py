"""Storing a parsed ChatGPT export: tree and active leaf, counts, deduplication, refusals,
nothing half-written, encryption at rest and withdrawal deletion (the data download is tested
through the pages in test_import_view)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from django.db import connection

from studyplatform.chat.importers import ImportFormatError, parse_export
from studyplatform.chat.importers.chatgpt import conversation_fingerprint, message_fingerprint
from studyplatform.chat.importing import ImportRefused, chatgpt_import
from studyplatform.chat.models import Conversation, Message
from studyplatform.core.models import AuditEvent
from studyplatform.participants.models import Participant
from studyplatform.participants.services import participant_withdraw

pytestmark = pytest.mark.django_db

FIXTURE_JSON = Path(__file__).resolve().parent / "importers" / "fixtures" / "conversations.json"


def export_zip(tmp_path: Path, json_bytes: bytes | None = None) -> Path:
    path = tmp_path / "chatgpt-export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("user.json", b'{"id": "user-synthetic"}')
        zf.writestr("conversations.json", json_bytes or FIXTURE_JSON.read_bytes())
        zf.writestr("chat.html", b"<html></html>")
    return path


def conversation(participant: Participant, conv_id: str) -> Conversation:
    return Conversation.objects.get(
        participant=participant, external_id=conversation_fingerprint(conv_id)
    )


def message(conv: Conversation, conv_id: str, node_id: str) -> Message:
    return conv.messages.get(external_id=message_fingerprint(conv_id, node_id))


def test_it_imports_every_branch_with_parent_links_and_the_active_leaf(
    recruiting_study, enroll, tmp_path
):
    # given: an enrolled participant who agreed to importing history
    participant = enroll(recruiting_study)
    # when: they import the export zip
    chatgpt_import(participant=participant, source=export_zip(tmp_path))
    # then: the branching conversation keeps both the regenerated reply and the edited question
    conv = conversation(participant, "conv-branching")
    u1 = message(conv, "conv-branching", "c2-u1")
    a1 = message(conv, "conv-branching", "c2-a1")
    a1b = message(conv, "conv-branching", "c2-a1b")
    u2 = message(conv, "conv-branching", "c2-u2")
    a3 = message(conv, "conv-branching", "c2-a3")
    u1b = message(conv, "conv-branching", "c2-u1b")
    a2 = message(conv, "conv-branching", "c2-a2")
    assert u1.parent is None and u1b.parent is None
    assert a1.parent == u1 and a1b.parent == u1 and u2.parent == a1b
    assert a3.parent == u2 and a2.parent == u1b
    # and: the participant sees the branch they last looked at, not the last one exported
    assert conv.active_leaf == a3
    assert conv.title == "Capital cities" and conv.imported and conv.import_source == "chatgpt"
    assert conv.arm == participant.allocation.arm
    assert a1.content == "Sydney." and a1.finish_reason == "interrupted"
    assert a1.model_reported == "gpt-4" and a1.model_requested == "gpt-4"
    assert a1.imported and a1.status == Message.Status.COMPLETE and a1.role == "assistant"
    assert a1.created_at.isoformat() == "2023-11-16T02:00:02+00:00"


def test_it_keeps_placeholders_custom_instructions_and_falls_back_on_missing_times(
    recruiting_study, enroll, tmp_path
):
    participant = enroll(recruiting_study)
    chatgpt_import(participant=participant, source=FIXTURE_JSON)
    multimodal = conversation(participant, "conv-multimodal")
    picture = message(multimodal, "conv-multimodal", "c3-u1")
    assert picture.content == "What is in it?\n[image: image_asset_pointer]"
    assert picture.content_type == "multimodal_text"
    # an undated message takes its conversation's time
    undated_message = message(multimodal, "conv-multimodal", "c3-u2")
    assert undated_message.created_at == multimodal.created_at
    assert conversation(participant, "conv-linear").has_custom_instructions
    assert not multimodal.has_custom_instructions
    # a conversation with no dates at all is still imported (dated "now")
    undated = conversation(participant, "conv-undated")
    assert undated.messages.count() == 2 and undated.created_at is not None


def test_the_counts_equal_the_parsers_and_are_audited(recruiting_study, enroll, tmp_path):
    participant = enroll(recruiting_study)
    expected = parse_export(FIXTURE_JSON).counts()
    result = chatgpt_import(participant=participant, source=export_zip(tmp_path))
    assert (result.conversations, result.messages, result.skipped) == (
        expected["conversations"],
        expected["messages"],
        0,
    )
    assert Conversation.objects.filter(participant=participant).count() == 5
    counted = Message.objects.filter(participant=participant, role__in=["user", "assistant"])
    assert sum(1 for m in counted if m.content.strip() and not m.content.startswith("[")) == 16
    event = AuditEvent.objects.get(action="chat.import")
    assert event.actor_label == f"participant {participant.code}"
    assert event.data == {"source": "chatgpt", "conversations": 5, "messages": 16, "skipped": 0}


def test_importing_the_same_export_again_adds_nothing(recruiting_study, enroll, tmp_path):
    participant = enroll(recruiting_study)
    chatgpt_import(participant=participant, source=export_zip(tmp_path))
    messages_before = Message.objects.count()
    # when: the same export is uploaded a second time
    again = chatgpt_import(participant=participant, source=FIXTURE_JSON)
    # then: every conversation is skipped and nothing is duplicated
    assert (again.conversations, again.messages, again.skipped) == (0, 0, 5)
    assert Conversation.objects.count() == 5 and Message.objects.count() == messages_before


def test_a_newer_export_adds_only_the_new_conversations(recruiting_study, enroll, tmp_path):
    participant = enroll(recruiting_study)
    data = json.loads(FIXTURE_JSON.read_bytes())
    older = [c for c in data if c["id"] != "conv-linear"]
    chatgpt_import(participant=participant, source=json.dumps(older).encode())
    result = chatgpt_import(participant=participant, source=FIXTURE_JSON)
    assert (result.conversations, result.messages, result.skipped) == (1, 2, 4)
    assert Conversation.objects.count() == 5


def test_two_participants_can_import_the_same_export(recruiting_study, enroll):
    first, second = enroll(recruiting_study), enroll(recruiting_study)
    chatgpt_import(participant=first, source=FIXTURE_JSON)
    result = chatgpt_import(participant=second, source=FIXTURE_JSON)
    assert result.conversations == 5 and result.skipped == 0
    assert Conversation.objects.filter(participant=second).count() == 5


def test_a_malformed_file_raises_the_parsers_reason_and_saves_nothing(
    recruiting_study, enroll, tmp_path
):
    participant = enroll(recruiting_study)
    chatgpt_import(participant=participant, source=json.dumps([]).encode())
    before = (Conversation.objects.count(), Message.objects.count(), AuditEvent.objects.count())
    broken = export_zip(tmp_path, b'[{"id": "x", "mapping": {"a": {"parent": "missing"}}}]')
    with pytest.raises(ImportFormatError) as error:
        chatgpt_import(participant=participant, source=broken)
    assert str(error.value) == "conversation 1 ('x'): node 'a' points to a missing parent 'missing'"
    after = (Conversation.objects.count(), Message.objects.count(), AuditEvent.objects.count())
    assert after == before


def test_a_failure_while_storing_leaves_nothing_half_written(recruiting_study, enroll, monkeypatch):
    # given: storing breaks after the conversations and messages are inserted
    participant = enroll(recruiting_study)

    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Conversation.objects, "bulk_update", explode)
    with pytest.raises(RuntimeError):
        chatgpt_import(participant=participant, source=FIXTURE_JSON)
    # then: the transaction rolled everything back
    assert Conversation.objects.count() == 0 and Message.objects.count() == 0


def test_without_consent_to_import_history_it_is_refused(recruiting_study, enroll):
    choices = {"agree": True, "adult": True, "share_chats": True, "import_history": False}
    participant = enroll(recruiting_study, choices=choices)
    with pytest.raises(ImportRefused) as refused:
        chatgpt_import(participant=participant, source=FIXTURE_JSON)
    assert refused.value.code == "consent"
    assert Conversation.objects.count() == 0


def test_a_withdrawn_participant_cannot_import(recruiting_study, enroll):
    participant = enroll(recruiting_study)
    participant_withdraw(participant=participant, mode="keep", by="participant")
    participant.refresh_from_db()
    with pytest.raises(ImportRefused) as refused:
        chatgpt_import(participant=participant, source=FIXTURE_JSON)
    assert refused.value.code == "withdrawn"
    assert Conversation.objects.count() == 0


def test_a_dry_run_counts_without_writing(recruiting_study, enroll):
    participant = enroll(recruiting_study)
    fresh = chatgpt_import(participant=None, source=FIXTURE_JSON, dry_run=True)
    assert (fresh.conversations, fresh.messages, fresh.skipped) == (5, 16, 0)
    assert (
        Conversation.objects.count() == 0
        and not AuditEvent.objects.filter(action="chat.import").exists()
    )
    chatgpt_import(participant=participant, source=FIXTURE_JSON)
    preview = chatgpt_import(participant=participant, source=FIXTURE_JSON, dry_run=True)
    assert (preview.conversations, preview.messages, preview.skipped) == (0, 0, 5)


def test_imported_text_is_encrypted_at_rest(recruiting_study, enroll):
    participant = enroll(recruiting_study)
    chatgpt_import(participant=participant, source=FIXTURE_JSON)
    stored = message(conversation(participant, "conv-branching"), "conv-branching", "c2-a2")
    assert stored.content == "Canberra is the capital."
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM chat_message WHERE id = %s", [stored.pk])
        (raw,) = cursor.fetchone()
        cursor.execute(
            "SELECT title FROM chat_conversation WHERE id = %s", [stored.conversation_id]
        )
        (raw_title,) = cursor.fetchone()
    assert raw and "Canberra" not in raw
    assert raw_title and "Capital" not in raw_title


def test_withdrawal_with_deletion_removes_imported_history(recruiting_study, enroll):
    participant, other = enroll(recruiting_study), enroll(recruiting_study)
    chatgpt_import(participant=participant, source=FIXTURE_JSON)
    chatgpt_import(participant=other, source=FIXTURE_JSON)
    stored = Message.objects.filter(participant=participant).count()
    participant_withdraw(participant=participant, mode="delete", by="participant")
    assert not Conversation.objects.filter(participant=participant).exists()
    assert not Message.objects.filter(participant=participant).exists()
    # and: nobody else's history is touched
    assert Conversation.objects.filter(participant=other).count() == 5
    event = AuditEvent.objects.get(action="participant.withdraw")
    assert event.data["deleted"]["conversations"] == 5
    assert event.data["deleted"]["messages"] == stored
