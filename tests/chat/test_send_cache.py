"""The send's kept conversation rows (chat.send_load.send_cache, issue 19). A repeat send of a
conversation reads nothing before it stores, and what it kept never decides anything on rows
that changed since: most tests change a row the way no gate token sees (a bare UPDATE) and show
the next send deciding on the fresh rows. Removing the fingerprint's check from the storing
statement fails them."""

from __future__ import annotations

import copy

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from studyplatform.chat import message_record, send_load, services
from studyplatform.chat.models import Conversation, Message
from studyplatform.core import fields as core_fields
from studyplatform.participants.models import Participant
from studyplatform.safety.models import SafetyAlert
from studyplatform.studies.models import Arm, Study
from studyplatform.studies.services import protocol_version_create
from tests.chat import test_chat_send_gate
from tests.chat.test_chat_send_gate import consume, reply

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not send_load.send_cache_available(connection),
        reason="rows are kept only where the storing statement checks their fingerprint",
    ),
]

me = test_chat_send_gate.me  # a signed-in participant of the chat study
warm = test_chat_send_gate.warm  # ... with one answered message in a conversation


def kept_fingerprint(conversation) -> str | None:
    kept = send_load.send_cache.get(conversation.pk)
    return kept[1] if kept is not None else None


def fresh_fingerprint(conversation) -> str:
    send_load.conversation_for_send(conversation.pk, None)
    return kept_fingerprint(conversation)


def stored_texts(conversation) -> list[str]:
    return [m.content for m in conversation.messages.filter(role="user").order_by("pk")]


def conversation_reads(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and "studies_protocolversion" in q["sql"]
    ]


def test_a_repeat_send_reads_no_conversation_before_it_stores(client, me, warm):
    # given: the first send kept the conversation's row (fixture `warm`)
    assert kept_fingerprint(warm) is not None
    # when
    with CaptureQueriesContext(connection) as queries:
        response = reply(client, warm, "second")
        events = consume(response)
    # then: no read of the conversation; the message is stored and answered
    assert response.status_code == 200 and events[-1][0] == "done"
    assert conversation_reads(queries) == []
    assert stored_texts(warm) == ["first", "second"]


def test_without_a_kept_row_the_send_reads_the_conversation_and_keeps_it(client, me, warm):
    send_load.send_cache.clear()
    with CaptureQueriesContext(connection) as queries:
        response = reply(client, warm, "second")
        consume(response)
    assert len(conversation_reads(queries)) == 1
    assert kept_fingerprint(warm) == fresh_fingerprint(warm)


def test_opening_the_chat_page_keeps_the_row_for_the_first_send(client, me, upstream):
    # given: a new conversation whose page the participant opens
    conversation = services.conversation_create(participant=me)
    assert client.get(f"/p/chat/c/{conversation.pk}/").status_code == 200
    assert kept_fingerprint(conversation) == fresh_fingerprint(conversation)
    # when: the first send
    with CaptureQueriesContext(connection) as queries:
        response = reply(client, conversation, "hello")
        events = consume(response)
    # then: it read no conversation
    assert events[-1][0] == "done"
    assert conversation_reads(queries) == []


def test_someone_elses_chat_page_is_not_found_and_keeps_nothing(client, me, chat_study, enroll):
    theirs = services.conversation_create(participant=enroll(chat_study))
    assert client.get(f"/p/chat/c/{theirs.pk}/").status_code == 404
    assert kept_fingerprint(theirs) is None


def test_each_send_gets_its_own_objects_from_the_kept_row(me, warm):
    # given: two sends' objects from the same kept row
    first, _ = send_load.kept_conversation_for_send(warm.pk)
    second, _ = send_load.kept_conversation_for_send(warm.pk)
    # when: one request changes what it got
    first.participant.study.current_version.content["limits"] = {"max_message_chars": 1}
    first.arm.parameters["temperature"] = 99
    first.title = "changed"
    # then: the other request's objects, and the next one's, are as read
    third, _ = send_load.kept_conversation_for_send(warm.pk)
    for other in (second, third):
        assert other.participant.study.current_version.content.get("limits") != {
            "max_message_chars": 1
        }
        assert other.arm.parameters.get("temperature") != 99
        assert other.title != "changed"
    assert first.participant is not second.participant


def test_a_kept_row_is_decrypted_once_and_its_json_parsed_for_each_send(me, warm, monkeypatch):
    # given: the conversation has a title (encrypted at rest) and its row is read and kept
    Conversation.objects.filter(pk=warm.pk).update(title="Tuesday")
    send_load.send_cache.clear()
    assert send_load.conversation_for_send(warm.pk, None).title == "Tuesday"
    decrypted = []
    real_decrypt = core_fields.decrypt_str
    monkeypatch.setattr(
        core_fields, "decrypt_str", lambda token: decrypted.append(token) or real_decrypt(token)
    )
    # when: two sends build their objects from the kept row
    one, _ = send_load.kept_conversation_for_send(warm.pk)
    two, _ = send_load.kept_conversation_for_send(warm.pk)
    # then: the title is the kept plain text, decrypted no more; the protocol's JSON is each
    # send's own
    assert one.title == two.title == "Tuesday"
    assert decrypted == []
    one_content = one.participant.study.current_version.content
    assert one_content == two.participant.study.current_version.content
    assert one_content is not two.participant.study.current_version.content


@pytest.mark.parametrize(
    "change",
    [
        "participant language",
        "participant status",
        "participant last seen",
        "study status",
        "study version",
        "arm prompt",
        "arm parameters",
        "arm active",
        "conversation title",
    ],
)
def test_the_fingerprint_changes_with_every_row_the_checks_read(me, warm, change):
    before = fresh_fingerprint(warm)
    study = me.study
    if change == "participant language":
        Participant.objects.filter(pk=me.pk).update(language="pt-br")
    elif change == "participant status":
        Participant.objects.filter(pk=me.pk).update(status=Participant.Status.WITHDRAWN)
    elif change == "participant last seen":
        Participant.objects.filter(pk=me.pk).update(last_seen_at=timezone.now())
    elif change == "study status":
        Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    elif change == "study version":
        Study.objects.filter(pk=study.pk).update(current_version=None)
    elif change == "arm prompt":
        Arm.objects.filter(pk=warm.arm_id).update(system_prompt="Something else.")
    elif change == "arm parameters":
        Arm.objects.filter(pk=warm.arm_id).update(parameters={"temperature": 0.1})
    elif change == "arm active":
        Arm.objects.filter(pk=warm.arm_id).update(is_active=False)
    else:
        Conversation.objects.filter(pk=warm.pk).update(title="Renamed")
    assert fresh_fingerprint(warm) != before


def test_the_fingerprint_leaves_out_what_a_send_writes_itself(me, warm):
    before = fresh_fingerprint(warm)
    Conversation.objects.filter(pk=warm.pk).update(active_leaf_id=None, updated_at=timezone.now())
    assert fresh_fingerprint(warm) == before


def test_the_storing_statement_stores_nothing_on_a_changed_fingerprint(me, warm):
    # given: a kept row, then the arm changes behind it
    conversation, fingerprint = send_load.kept_conversation_for_send(warm.pk)
    Arm.objects.filter(pk=warm.arm_id).update(system_prompt="Changed behind the kept row.")
    message = Message(
        conversation=conversation,
        participant=conversation.participant,
        role=Message.Role.USER,
        content="on stale rows",
        status=Message.Status.PENDING,
        created_at=timezone.now(),
        received_at=timezone.now(),
        arm=conversation.arm,
    )
    # when / then
    with pytest.raises(message_record.Changed):
        message_record.insert_chained(message, now=timezone.now(), fingerprint=fingerprint)
    assert message.pk is None
    assert "on stale rows" not in stored_texts(warm)
    # and with the fingerprint as it is now, it stores
    message_record.insert_chained(message, now=timezone.now(), fingerprint=fresh_fingerprint(warm))
    assert stored_texts(warm)[-1] == "on stale rows"


def test_an_arm_changed_behind_a_kept_row_is_what_the_model_gets(client, me, warm, upstream):
    # given: the arm's system prompt changes with a bare UPDATE (no gate token changes)
    Arm.objects.filter(pk=warm.arm_id).update(system_prompt="You are the renewed assistant.")
    # when
    response = reply(client, warm, "second")
    # then: the message was stored once, on the fresh rows, and the model got the new prompt
    assert consume(response)[-1][0] == "done"
    system = [m["content"] for m in upstream.requests[-1]["messages"] if m["role"] == "system"]
    assert any("You are the renewed assistant." in text for text in system)
    assert stored_texts(warm) == ["first", "second"]
    assert kept_fingerprint(warm) == fresh_fingerprint(warm)


def test_a_withdrawal_no_token_saw_still_stops_a_kept_row_send(client, me, warm):
    Participant.objects.filter(pk=me.pk).update(status=Participant.Status.WITHDRAWN)
    response = reply(client, warm, "after withdrawing")
    assert response.status_code == 403
    assert response.json()["redirect"] == "/p/withdrawn/"
    assert stored_texts(warm) == ["first"]


def test_a_lower_limit_in_a_new_protocol_version_applies_to_a_kept_row_send(
    client, me, warm, chat_study, owner
):
    # given: a new protocol version lowers the message length limit
    doc = copy.deepcopy(chat_study.current_version.content)
    doc.setdefault("limits", {})["max_message_chars"] = 20
    version, created = protocol_version_create(
        study=chat_study, doc=doc, author=owner, change_note="shorter"
    )
    assert created
    # when: a message longer than the new limit, shorter than the old
    response = reply(client, warm, "x" * 30)
    # then: refused by the new limit; a short one is stored under the new version
    assert response.status_code == 400 and response.json()["code"] == "too_long"
    assert consume(reply(client, warm, "short"))[-1][0] == "done"
    assert stored_texts(warm) == ["first", "short"]
    assert warm.messages.filter(role="user").latest("pk").protocol_version_id == version.pk


def test_a_refusal_is_never_given_on_a_kept_row(client, me, warm):
    # given: a send refused while the study was closed kept that closed row ...
    study = me.study
    status = study.status
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    assert reply(client, warm, "while closed").json()["code"] == "study_closed"
    # ... and the study opened again behind it
    Study.objects.filter(pk=study.pk).update(status=status)
    # when
    response = reply(client, warm, "open again")
    # then: decided on the fresh row: stored and answered
    assert consume(response)[-1][0] == "done"
    assert stored_texts(warm) == ["first", "open again"]


def test_a_crisis_message_on_a_kept_row_is_stored_once_with_its_alert(
    client, me, warm, django_capture_on_commit_callbacks
):
    text = "I want to kill myself"
    with django_capture_on_commit_callbacks(execute=True):
        response = reply(client, warm, text)
        events = consume(response)
    assert events[0][0] == "message" and events[0][1]["crisis"]["severity"] == "high"
    assert stored_texts(warm) == ["first", text]
    alert = SafetyAlert.objects.get()
    assert alert.message.content == text


def test_someone_elses_kept_conversation_is_not_found(client, me, warm, chat_study, enroll):
    # given: another participant's conversation, kept in this process
    other = enroll(chat_study)
    theirs = services.conversation_create(participant=other)
    send_load.conversation_for_send(theirs.pk, None)
    assert kept_fingerprint(theirs) is not None
    # when: my session posts to it
    response = reply(client, theirs, "not mine")
    # then
    assert response.status_code == 404
    assert Message.objects.filter(conversation=theirs).count() == 0


def test_kept_rows_of_one_protocol_version_share_its_document(me, warm):
    # given: two conversations of the same study version, each read for a send
    other = services.conversation_create(participant=me)
    send_load.conversation_for_send(warm.pk, None)
    send_load.conversation_for_send(other.pk, None)
    (first, _), (second, _) = send_load.send_cache.get(warm.pk), send_load.send_cache.get(other.pk)
    # then: one copy of the document; the objects built from each are still their own
    block = send_load._statement_and_blocks()[1][-1]
    content = block.start + block.attnames.index("content")
    assert first[content] is second[content]
    one, _ = send_load.kept_conversation_for_send(warm.pk)
    two, _ = send_load.kept_conversation_for_send(other.pk)
    assert one.participant.study.protocol == two.participant.study.protocol
    assert one.participant.study.protocol is not two.participant.study.protocol


def test_the_cache_keeps_at_most_max_rows_dropping_the_oldest(monkeypatch):
    cache = send_load._SendCache()
    monkeypatch.setattr(send_load._SendCache, "MAX", 2)
    for conversation_id in (1, 2, 3):
        cache.put(conversation_id, (conversation_id,), f"fp{conversation_id}")
    assert cache.get(1) is None
    assert cache.get(2) == ((2,), "fp2") and cache.get(3) == ((3,), "fp3")
    cache.put(2, (2,), "fp2b")  # a newer read of 2 makes 3 the oldest
    cache.put(4, (4,), "fp4")
    assert cache.get(3) is None and cache.get(2) == ((2,), "fp2b")
