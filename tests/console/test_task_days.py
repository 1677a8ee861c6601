"""The study overview's daily conversation task table: per study day, how many participants
were shown their task, opened a conversation from it and chatted after it."""

from __future__ import annotations

import copy
import datetime as dt
import re

import pytest

from studyplatform.chat import services as chat_services
from studyplatform.studies.services import study_create_from_protocol
from surveys.daily_tasks import task_conversation_start, task_show
from tests.factories import launch_study

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)  # 09:00 in São Paulo


def tasks_doc(rct_doc: dict, slug: str) -> dict:
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = slug
    doc["tasks"] = [
        {
            "key": "personal",
            "rule": "in_order",
            "open_new_conversation": True,
            "items": [{"key": "grateful", "text": {"en": "Grateful?", "pt-br": "Grato?"}}],
        }
    ]
    for arm in doc["arms"]:
        arm["tasks"] = "personal"
    return doc


def cell(html: str, day: int, column: str) -> int:
    row = re.search(rf'<tr data-task-day="{day}">(.*?)</tr>', html).group(1)
    return int(re.search(rf'data-col="{column}">(\d+)<', row).group(1))


@pytest.fixture
def tasks_study(owner, rct_doc, enroll):
    study = launch_study(
        study_create_from_protocol(doc=tasks_doc(rct_doc, "tasks-console"), author=owner), owner
    )
    ana, bruno, carla = (enroll(study, now=T0) for _ in range(3))
    # day 0: all three shown; Ana opens a conversation and writes, Bruno writes elsewhere
    for person in (ana, bruno, carla):
        task_show(participant=person, now=T0 + dt.timedelta(hours=1))
    conversation = task_conversation_start(participant=ana, now=T0 + dt.timedelta(hours=2))
    chat_services.message_send(
        participant=ana, conversation=conversation, text="hi", now=T0 + dt.timedelta(hours=3)
    )
    other = chat_services.conversation_create(participant=bruno, now=T0)
    chat_services.message_send(
        participant=bruno, conversation=other, text="hi", now=T0 + dt.timedelta(hours=4)
    )
    # day 1: only Ana sees hers
    task_show(participant=ana, now=T0 + dt.timedelta(days=1, hours=1))
    return study


def test_the_overview_counts_shown_opened_and_chatted_after_per_study_day(
    tasks_study, owner, client
):
    client.force_login(owner)
    html = client.get(f"/console/{tasks_study.slug}/").content.decode()
    assert 'data-overview="tasks"' in html
    assert [cell(html, 0, c) for c in ("shown", "started", "chatted")] == [3, 1, 2]
    assert [cell(html, 1, c) for c in ("shown", "started", "chatted")] == [1, 0, 0]


def test_a_monitor_sees_the_counts_which_carry_no_arm(tasks_study, member_of, client):
    client.force_login(member_of(tasks_study, "monitor"))
    html = client.get(f"/console/{tasks_study.slug}/").content.decode()
    assert cell(html, 0, "shown") == 3
    assert "personal" not in html  # the list key would tell a blinded monitor the arm


def test_another_studys_researcher_cannot_see_the_task_log(tasks_study, rct_doc, make_user, client):
    stranger = make_user("stranger")
    study_create_from_protocol(doc=tasks_doc(rct_doc, "strangers-study"), author=stranger)
    client.force_login(stranger)
    assert client.get(f"/console/{tasks_study.slug}/").status_code == 404
    # their own study's table counts only their own (no) participants
    html = client.get("/console/strangers-study/").content.decode()
    assert "No participant has been shown a task yet." in html
    assert "data-task-day" not in html


def test_a_study_without_tasks_has_no_task_table(recruiting_study, owner, client):
    client.force_login(owner)
    html = client.get(f"/console/{recruiting_study.slug}/").content.decode()
    assert 'data-overview="tasks"' not in html
