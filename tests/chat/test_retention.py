"""Retention of raw chat text after a study closes: the protocol section and its errors, the
beat sweep (keep vs delete, before and after the delay, idempotent, audited, metadata kept) and
the console's retention card."""

from __future__ import annotations

import copy
import datetime as dt
import json
import zipfile

import pytest

from studyplatform.beat import BEAT_SCHEDULE
from studyplatform.chat.models import Conversation, MemoryNote, Message
from studyplatform.chat.retention import chat_text_retention_sweep
from studyplatform.chat.services import conversation_create, memory_save, message_send
from studyplatform.chat.tasks import chat_text_retention_sweep as sweep_task
from studyplatform.core.models import AuditEvent
from studyplatform.exports.models import DatasetExport
from studyplatform.exports.services import export_build, export_create, export_path
from studyplatform.studies.protocol import validate_document
from studyplatform.studies.services import study_create_from_protocol, study_transition
from tests.factories import launch_study

pytestmark = pytest.mark.django_db

TEXTS = ["I talk to it every night before sleeping", "Hoje conversei com o bot por horas"]


def make_study(owner, rct_doc, retention: dict | None, slug: str):
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = slug
    if retention is not None:
        doc["retention"] = retention
    return launch_study(study_create_from_protocol(doc=doc, author=owner), owner)


def chat(study, enroll) -> list[int]:
    """Two participants who each sent a message and have a memory note; returns message ids."""
    ids = []
    for text in TEXTS:
        participant = enroll(study)
        conversation = conversation_create(participant=participant)
        Conversation.objects.filter(pk=conversation.pk).update(title=f"About: {text[:12]}")
        result = message_send(participant=participant, conversation=conversation, text=text)
        ids.append(result.message.pk)
        memory_save(participant=participant, text=f"remembers: {text}")
    return ids


def close(study, owner):
    return study_transition(study=study, to="closed", actor=owner)


@pytest.fixture
def deleting_study(owner, rct_doc, enroll):
    study = make_study(owner, rct_doc, {"chat_text_after_close": "delete", "after_days": 30}, "ret")
    ids = chat(study, enroll)
    return close(study, owner), ids


def test_a_closed_study_with_delete_keeps_its_text_until_the_delay_has_passed(deleting_study):
    # given: a study closed with "delete after 30 days"
    study, ids = deleting_study
    assert study.closed_at is not None
    # when: the sweep runs 29 days and 23 hours after closing
    result = chat_text_retention_sweep(now=study.closed_at + dt.timedelta(days=30, hours=-1))
    # then: nothing was removed
    assert result == {}
    assert sorted(Message.objects.filter(pk__in=ids).values_list("content", flat=True)) == sorted(
        TEXTS
    )
    assert not AuditEvent.objects.filter(action="chat.retention_delete").exists()


def test_after_the_delay_the_text_goes_and_the_usage_metadata_stays(deleting_study):
    # given: the study's messages as they were before the sweep
    study, ids = deleting_study
    before = {
        m.pk: (m.role, m.status, m.created_at, m.conversation_id, m.content)
        for m in Message.objects.filter(pk__in=ids)
    }
    # when: the sweep runs 30 days after closing
    when = study.closed_at + dt.timedelta(days=30)
    result = chat_text_retention_sweep(now=when)
    # then: every message row is still there, with its metadata and text length, but no text
    after = Message.objects.filter(pk__in=ids)
    assert after.count() == 2
    for message in after:
        role, status, created_at, conversation_id, text = before[message.pk]
        assert (message.role, message.status, message.created_at) == (role, status, created_at)
        assert message.conversation_id == conversation_id
        assert message.content == ""
        assert message.text_chars == len(text)
        assert message.text_deleted_at == when
    # and: titles and memory notes went too
    assert set(
        Conversation.objects.filter(participant__study=study).values_list("title", flat=True)
    ) == {""}
    assert not MemoryNote.objects.filter(participant__study=study).exists()
    # and: one audit event with the counts
    assert result == {
        "ret": {
            "messages": 2,
            "conversation_titles": 2,
            "memory_notes": 2,
            "alert_excerpts": 0,
            "voice_clips": 0,
        }
    }
    event = AuditEvent.objects.get(action="chat.retention_delete")
    assert event.study_slug == "ret" and event.actor_label == "system"
    assert event.data["messages"] == 2 and event.data["after_days"] == 30


def test_the_sweep_is_idempotent(deleting_study):
    # given: a sweep already removed the text
    study, ids = deleting_study
    chat_text_retention_sweep(now=study.closed_at + dt.timedelta(days=31))
    stamps = dict(Message.objects.filter(pk__in=ids).values_list("pk", "text_deleted_at"))
    # when: the sweep runs again the next day
    result = chat_text_retention_sweep(now=study.closed_at + dt.timedelta(days=32))
    # then: it changes nothing and writes no second audit event
    assert result == {}
    assert dict(Message.objects.filter(pk__in=ids).values_list("pk", "text_deleted_at")) == stamps
    assert AuditEvent.objects.filter(action="chat.retention_delete").count() == 1


def test_keep_and_no_section_keep_the_text_forever(owner, rct_doc, enroll):
    # given: one study that says keep, one without a retention section; both closed
    kept = make_study(owner, rct_doc, {"chat_text_after_close": "keep"}, "kept")
    silent = make_study(owner, rct_doc, None, "silent")
    ids = chat(kept, enroll) + chat(silent, enroll)
    kept, silent = close(kept, owner), close(silent, owner)
    # when: the sweep runs ten years later
    result = chat_text_retention_sweep(now=kept.closed_at + dt.timedelta(days=3650))
    # then: every text is still there
    assert result == {}
    assert sorted(Message.objects.filter(pk__in=ids).values_list("content", flat=True)) == sorted(
        TEXTS * 2
    )


def test_a_study_that_has_not_closed_keeps_its_text(
    owner, rct_doc, enroll, django_capture_on_commit_callbacks
):
    # given: a running study whose protocol deletes chat text 0 days after closing
    study = make_study(owner, rct_doc, {"chat_text_after_close": "delete", "after_days": 0}, "open")
    ids = chat(study, enroll)
    # when: the beat task runs
    sweep_task.delay()
    # then: nothing was removed
    assert sorted(Message.objects.filter(pk__in=ids).values_list("content", flat=True)) == sorted(
        TEXTS
    )


def test_the_beat_task_removes_text_of_a_study_past_its_delay(owner, rct_doc, enroll):
    # given: a study closed with "delete after 0 days"
    study = make_study(owner, rct_doc, {"chat_text_after_close": "delete", "after_days": 0}, "zero")
    ids = chat(study, enroll)
    close(study, owner)
    # when: the task beat schedules runs (eager in tests)
    sweep_task.delay()
    # then
    assert set(Message.objects.filter(pk__in=ids).values_list("content", flat=True)) == {""}
    entry = BEAT_SCHEDULE["chat-text-retention"]
    assert entry["task"] == sweep_task.name and entry["options"]["expires"] > 0


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        (
            {"chat_text_after_close": "delete"},
            "retention.after_days",
            "is required when chat_text_after_close is delete: the number of days after the "
            "study closes before chat text is deleted",
        ),
        (
            {"chat_text_after_close": "keep", "after_days": 5},
            "retention.after_days",
            "only applies when chat_text_after_close is delete; remove it, or set "
            "chat_text_after_close to delete",
        ),
        (
            {"chat_text_after_close": "shred", "after_days": 5},
            "retention.chat_text_after_close",
            "must be one of: keep, delete",
        ),
        (
            {"chat_text_after_close": "delete", "after_days": -1},
            "retention.after_days",
            "must be at least 0",
        ),
        ({"after_days": 5}, "retention.chat_text_after_close", "this field is required"),
    ],
)
def test_the_retention_section_is_validated_with_clear_errors(rct_doc, section, path, message):
    # given: a protocol with a wrong retention section
    doc = copy.deepcopy(rct_doc)
    doc["retention"] = section
    # when
    errors = validate_document(doc)
    # then: exactly that error, at that path
    assert [(e.path, e.message) for e in errors] == [(path, message)]


def test_a_valid_retention_section_passes(rct_doc):
    doc = copy.deepcopy(rct_doc)
    doc["retention"] = {"chat_text_after_close": "delete", "after_days": 90}
    assert validate_document(doc) == []


def test_the_dashboard_shows_when_deletion_is_due_and_when_it_happened(
    deleting_study, owner, client
):
    # given: a closed study with delete after 30 days
    study, _ = deleting_study
    client.force_login(owner)
    url = f"/console/{study.slug}/dashboard/"
    due = (study.closed_at + dt.timedelta(days=30)).strftime("%Y-%m-%d")
    # when / then: before the sweep, the due date
    html = client.get(url).content.decode()
    assert "Chat text is deleted 30 days after the study closes" in html
    assert f"Due for deletion on {due}" in html
    # when / then: after the sweep, when it happened and how many messages
    chat_text_retention_sweep(now=study.closed_at + dt.timedelta(days=30))
    html = client.get(url).content.decode()
    assert "(2 messages)." in html and "Due for deletion" not in html


def test_an_export_after_deletion_keeps_the_text_length_but_no_text(deleting_study, owner):
    # given: the study's chat text was removed by retention
    study, _ = deleting_study
    chat_text_retention_sweep(now=study.closed_at + dt.timedelta(days=30))
    # when: the messages table is exported
    export = export_create(
        study=study, user=owner, options={"format": "jsonl", "tables": ["messages"]}, enqueue=False
    )
    export = export_build(export=export)
    assert export.status == DatasetExport.Status.DONE, export.error
    with zipfile.ZipFile(export_path(export)) as archive:
        rows = [json.loads(line) for line in archive.read("messages.jsonl").splitlines()]
    # then: one row per message, its length from before the deletion, and no text
    assert sorted(row["n_chars"] for row in rows) == sorted(len(t) for t in TEXTS)
    assert {row["text_included"] for row in rows} == {False}
    assert {row["text"] or "" for row in rows} == {""}
