"""Daily conversation tasks: the rules, the participant-local study day, the card on the home
and chat pages, the conversation opened from it and the log of what was shown."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.utils import timezone

from studyplatform.chat import services as chat_services
from studyplatform.chat.models import Conversation
from studyplatform.participants.services import participant_withdraw
from studyplatform.participants.session import SESSION_KEY
from studyplatform.studies.protocol.tasks import task_for_day
from studyplatform.studies.services import study_create_from_protocol
from surveys.daily_tasks import (
    TaskError,
    study_day_of,
    task_conversation_start,
    task_show,
)
from surveys.models import TaskAssignment
from tests.factories import launch_study

UTC = dt.UTC
# 09:00 in São Paulo (UTC-3, no DST since 2019), a Monday.
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

GRATEFUL = {
    "en": "Talk about something you are grateful for.",
    "pt-br": "Fale sobre algo pelo qual você é grato.",
}
HISTORY = {
    "en": "Discuss how a historical event shaped technology.",
    "pt-br": "Discuta como um evento histórico moldou a tecnologia.",
}
FREE = {"en": "Talk about anything you like.", "pt-br": "Converse sobre o que quiser."}


def with_tasks(doc: dict, lists: list[dict], arm_lists: dict[str, str]) -> dict:
    doc = copy.deepcopy(doc)
    doc["tasks"] = lists
    for arm in doc["arms"]:
        if arm["key"] in arm_lists:
            arm["tasks"] = arm_lists[arm["key"]]
    return doc


def tasks_study(owner, rct_doc, lists, arm_lists, slug="tasks-study"):
    doc = with_tasks(rct_doc, lists, arm_lists)
    doc["study"]["slug"] = slug
    return launch_study(study_create_from_protocol(doc=doc, author=owner), owner)


def five_items(rule: str) -> dict:
    return {
        "key": "five",
        "rule": rule,
        "items": [{"key": f"t{i}", "text": f"task {i}"} for i in range(5)],
    }


# ---- the rules (pure)


def test_in_order_gives_item_n_on_study_day_n_and_starts_again_after_the_last():
    keys = [
        task_for_day(
            five_items("in_order"), study_day=d, local_date=dt.date(2026, 3, 2), seed="s"
        ).key
        for d in range(7)
    ]
    assert keys == ["t0", "t1", "t2", "t3", "t4", "t0", "t1"]


def test_random_repeats_no_item_before_every_item_was_shown_and_is_reproducible():
    def keys(seed: str) -> list[str]:
        return [
            task_for_day(
                five_items("random"), study_day=d, local_date=dt.date(2026, 3, 2), seed=seed
            ).key
            for d in range(10)
        ]

    first = keys("study:P1:five")
    assert sorted(first[:5]) == ["t0", "t1", "t2", "t3", "t4"]
    assert sorted(first[5:]) == ["t0", "t1", "t2", "t3", "t4"]
    assert keys("study:P1:five") == first
    # Different participants get different orders (fixed seeds: this pair differs).
    assert any(keys(f"study:P{n}:five")[:5] != first[:5] for n in range(2, 6))


def test_by_date_gives_the_item_of_the_local_date_and_nothing_on_other_dates():
    task_list = {
        "key": "dated",
        "rule": "by_date",
        "items": [
            {"key": "a", "text": "A", "date": "2026-03-02"},
            {"key": "b", "text": "B", "date": "2026-03-04"},
        ],
    }
    got = [
        task_for_day(task_list, study_day=d, local_date=dt.date(2026, 3, 2 + d), seed="s")
        for d in range(3)
    ]
    assert [t.key if t else None for t in got] == ["a", None, "b"]


def test_an_item_may_override_the_lists_open_new_conversation():
    task_list = {
        "key": "l",
        "rule": "in_order",
        "open_new_conversation": True,
        "items": [
            {"key": "a", "text": "A"},
            {"key": "b", "text": "B", "open_new_conversation": False},
        ],
    }
    day = dt.date(2026, 3, 2)
    assert task_for_day(task_list, study_day=0, local_date=day, seed="").open_new_conversation
    assert not task_for_day(task_list, study_day=1, local_date=day, seed="").open_new_conversation


# ---- the study day in the participant's time zone


@pytest.mark.django_db
def test_the_study_day_turns_at_the_participants_local_midnight(owner, rct_doc, enroll):
    # given: a participant in São Paulo enrolled at 09:00 local on 2 March
    study = tasks_study(
        owner, rct_doc, [five_items("in_order")], {"legacy": "five", "current": "five"}
    )
    participant = enroll(study, timezone_name="America/Sao_Paulo", now=T0)
    # when / then: 23:30 local on 2 March (02:30 UTC on the 3rd) is still day 0, 00:30 local
    # on 3 March is day 1
    assert study_day_of(participant, dt.datetime(2026, 3, 3, 2, 30, tzinfo=UTC)).number == 0
    assert (
        task_show(participant=participant, now=dt.datetime(2026, 3, 3, 2, 30, tzinfo=UTC)).task_key
        == "t0"
    )
    assert study_day_of(participant, dt.datetime(2026, 3, 3, 3, 30, tzinfo=UTC)).number == 1
    assert (
        task_show(participant=participant, now=dt.datetime(2026, 3, 3, 3, 30, tzinfo=UTC)).task_key
        == "t1"
    )
    # and a participant in Tokyo enrolled at the same instant (21:00 local) is on day 1 at
    # 15:30 UTC on 2 March (00:30 local on the 3rd)
    tokyo = enroll(study, timezone_name="Asia/Tokyo", now=T0)
    assert study_day_of(tokyo, dt.datetime(2026, 3, 2, 15, 30, tzinfo=UTC)).number == 1
    assert study_day_of(participant, dt.datetime(2026, 3, 2, 15, 30, tzinfo=UTC)).number == 0


@pytest.mark.django_db
def test_no_task_before_enrollment_or_after_the_last_study_day(owner, rct_doc, enroll):
    study = tasks_study(
        owner, rct_doc, [five_items("in_order")], {"legacy": "five", "current": "five"}
    )
    participant = enroll(study, now=T0)
    assert task_show(participant=participant, now=T0 - dt.timedelta(hours=1)) is None
    last = T0 + dt.timedelta(days=study.duration_days - 1)
    assert task_show(participant=participant, now=last) is not None
    assert (
        task_show(participant=participant, now=T0 + dt.timedelta(days=study.duration_days)) is None
    )


@pytest.mark.django_db
def test_showing_the_task_twice_a_day_logs_one_row_with_the_first_time(owner, rct_doc, enroll):
    study = tasks_study(
        owner, rct_doc, [five_items("in_order")], {"legacy": "five", "current": "five"}
    )
    participant = enroll(study, now=T0)
    first = task_show(participant=participant, now=T0 + dt.timedelta(hours=1))
    again = task_show(participant=participant, now=T0 + dt.timedelta(hours=5))
    assert again.pk == first.pk
    row = TaskAssignment.objects.get(participant=participant)
    assert row.shown_at == T0 + dt.timedelta(hours=1)
    assert (row.study_day, row.list_key, row.task_key) == (0, "five", "t0")


@pytest.mark.django_db
def test_an_arm_without_a_task_list_shows_no_task(owner, rct_doc, enroll):
    study = tasks_study(owner, rct_doc, [five_items("in_order")], {"legacy": "five"})
    people = [enroll(study, now=T0) for _ in range(4)]
    shown = {p.allocation.arm.key: task_show(participant=p, now=T0) for p in people}
    assert shown["legacy"] is not None
    assert shown["current"] is None


# ---- the first message after the task ("chatted after it")


@pytest.mark.django_db
def test_the_first_message_after_the_task_was_shown_is_logged_once(owner, rct_doc, enroll):
    study = tasks_study(
        owner, rct_doc, [five_items("in_order")], {"legacy": "five", "current": "five"}
    )
    participant = enroll(study, now=T0)
    conversation = chat_services.conversation_create(participant=participant, now=T0)
    # a message before the task was shown does not count
    chat_services.message_send(
        participant=participant,
        conversation=conversation,
        text="before",
        now=T0 + dt.timedelta(minutes=1),
    )
    task_show(participant=participant, now=T0 + dt.timedelta(minutes=5))
    assert TaskAssignment.objects.get().first_message_at is None
    first = chat_services.message_send(
        participant=participant,
        conversation=conversation,
        text="after",
        now=T0 + dt.timedelta(minutes=9),
    ).message
    chat_services.message_send(
        participant=participant,
        conversation=conversation,
        text="later",
        now=T0 + dt.timedelta(minutes=20),
    )
    row = TaskAssignment.objects.get()
    assert row.first_message_id == first.pk
    assert row.first_message_at == T0 + dt.timedelta(minutes=9)


# ---- the conversation opened from the task


@pytest.mark.django_db
def test_a_conversation_opened_from_the_task_sends_it_to_the_model_once(owner, rct_doc, enroll):
    lists = [
        {
            "key": "personal",
            "rule": "in_order",
            "open_new_conversation": True,
            "items": [{"key": "grateful", "text": GRATEFUL}],
        }
    ]
    study = tasks_study(owner, rct_doc, lists, {"legacy": "personal", "current": "personal"})
    participant = enroll(study, now=T0, language="pt-br")
    conversation = task_conversation_start(participant=participant, now=T0)
    # a second click opens the same conversation
    assert (
        task_conversation_start(participant=participant, now=T0 + dt.timedelta(minutes=1))
        == conversation
    )
    assert Conversation.objects.filter(participant=participant).count() == 1
    assert conversation.task_text == GRATEFUL["pt-br"]
    row = TaskAssignment.objects.get()
    assert (row.conversation_id, row.conversation_started_at) == (conversation.pk, T0)
    # the model gets the task with the system prompt; the participant's message is unchanged
    message = chat_services.message_send(
        participant=participant,
        conversation=conversation,
        text="Oi",
        now=T0 + dt.timedelta(minutes=2),
    ).message
    request = chat_services.build_request(
        user_message=message, arm=conversation.arm, participant=participant
    )
    assert GRATEFUL["pt-br"] in request.system
    assert request.system.startswith(conversation.arm.system_prompt.strip())
    assert request.messages[-1] == {"role": "user", "content": "Oi"}


@pytest.mark.django_db
def test_a_task_whose_list_offers_no_conversation_cannot_open_one(owner, rct_doc, enroll):
    study = tasks_study(
        owner, rct_doc, [five_items("in_order")], {"legacy": "five", "current": "five"}
    )
    participant = enroll(study, now=T0)
    with pytest.raises(TaskError) as info:
        task_conversation_start(participant=participant, now=T0)
    assert info.value.code == "no_conversation"
    assert not Conversation.objects.filter(participant=participant).exists()


# ---- the pages


def login(client, participant):
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


ONE_TASK = [
    {
        "key": "personal",
        "rule": "in_order",
        "open_new_conversation": True,
        # One item: the same task on every study day, so the page tests do not depend on the
        # hour they run at.
        "items": [{"key": "grateful", "text": GRATEFUL}],
    }
]


@pytest.mark.django_db
def test_the_chat_and_home_pages_show_the_task_in_the_participants_language(
    owner, rct_doc, enroll, client
):
    study = tasks_study(owner, rct_doc, ONE_TASK, {"legacy": "personal", "current": "personal"})
    participant = enroll(study, language="pt-br")
    login(client, participant)
    chat = client.get("/p/chat/", HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    assert GRATEFUL["pt-br"] in chat
    assert "Tarefa de conversa de hoje" in chat
    home = client.get("/p/", HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    assert GRATEFUL["pt-br"] in home
    assert GRATEFUL["en"] not in home


@pytest.mark.django_db
def test_the_card_button_opens_a_conversation_that_shows_the_task(owner, rct_doc, enroll, client):
    study = tasks_study(owner, rct_doc, ONE_TASK, {"legacy": "personal", "current": "personal"})
    participant = enroll(study)
    login(client, participant)
    assert "Start a conversation about this task" in client.get("/p/chat/").content.decode()
    response = client.post("/p/tasks/today/start/")
    conversation = Conversation.objects.get(participant=participant)
    assert response.status_code == 302
    assert response.url == f"/p/chat/c/{conversation.pk}/"
    page = client.get(response.url).content.decode()
    assert 'data-testid="task-note"' in page
    assert 'data-testid="task-card"' not in page  # the note says it already
    # another conversation shows the card with a link back to the task's conversation
    client.post("/p/chat/new/")
    other = Conversation.objects.filter(participant=participant).exclude(pk=conversation.pk).get()
    page = client.get(f"/p/chat/c/{other.pk}/").content.decode()
    assert 'data-testid="task-card"' in page
    assert f'href="/p/chat/c/{conversation.pk}/"' in page


@pytest.mark.django_db
def test_the_task_button_answers_a_participant_without_a_task_with_a_message(
    owner, rct_doc, enroll, client
):
    study = tasks_study(
        owner, rct_doc, [five_items("in_order")], {"legacy": "five", "current": "five"}
    )
    participant = enroll(study)
    login(client, participant)
    response = client.post("/p/tasks/today/start/", follow=True)
    assert "There is no conversation task to start today." in response.content.decode()
    assert not Conversation.objects.filter(participant=participant).exists()


@pytest.mark.django_db
def test_the_task_button_needs_a_signed_in_participant(client):
    response = client.post("/p/tasks/today/start/")
    assert response.status_code in (302, 403)
    assert not Conversation.objects.exists()


# ---- withdrawal


@pytest.mark.django_db
def test_withdrawal_with_deletion_deletes_the_task_log(owner, rct_doc, enroll):
    study = tasks_study(
        owner, rct_doc, [five_items("in_order")], {"legacy": "five", "current": "five"}
    )
    participant = enroll(study, now=T0)
    task_show(participant=participant, now=T0)
    participant_withdraw(participant=participant, mode="delete", by="participant")
    assert not TaskAssignment.objects.filter(participant=participant).exists()
    assert task_show(participant=participant, now=timezone.now()) is None


@pytest.mark.django_db
def test_the_participants_own_data_download_lists_the_tasks_they_were_shown(owner, rct_doc, enroll):
    from studyplatform.core.events import ParticipantDownloadRequested, publish

    study = tasks_study(
        owner, rct_doc, [five_items("in_order")], {"legacy": "five", "current": "five"}
    )
    participant = enroll(study, now=T0)
    task_show(participant=participant, now=T0 + dt.timedelta(hours=1))
    task_show(participant=participant, now=T0 + dt.timedelta(days=1, hours=1))
    tables: dict = {}
    for section in publish(ParticipantDownloadRequested(participant=participant)):
        tables.update(section)
    rows = tables["conversation_tasks"]
    assert [(r["study_day"], r["task"], r["text"]) for r in rows] == [
        (0, "t0", "task 0"),
        (1, "t1", "task 1"),
    ]
    assert rows[0]["shown_at"] == (T0 + dt.timedelta(hours=1)).isoformat()
