"""The `tasks` table of a dataset export: which daily conversation task each participant was
shown, when (under the export's date policy), and whether they chatted after it."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from studyplatform.chat import services as chat_services
from studyplatform.exports.pseudonyms import Pseudonymizer
from studyplatform.participants.models import Identity
from studyplatform.participants.services import participant_withdraw
from studyplatform.studies.services import study_create_from_protocol
from surveys.daily_tasks import task_conversation_start, task_show
from tests.exports.test_export_dataset import build, rows_of, unzip
from tests.factories import launch_study

pytestmark = pytest.mark.django_db

# 12:00 UTC is 09:00 in São Paulo (the participants' zone): offsets below stay on the local
# days their comments name.
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
SHIFT = 100


@pytest.fixture
def tasks_study(owner, rct_doc, enroll, settings, tmp_path):
    """Ana opens a conversation from her day-0 task and writes in it; Bruno sees his day-1 task
    and does not chat; Carla saw hers and withdrew asking for deletion."""
    settings.MEDIA_ROOT = tmp_path / "media"
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "tasks-export"
    doc["tasks"] = [
        {
            "key": "personal",
            "rule": "in_order",
            "open_new_conversation": True,
            "items": [
                {"key": "grateful", "text": {"en": "Grateful?", "pt-br": "Grato?"}},
                {"key": "friend", "text": {"en": "A friend?", "pt-br": "Um amigo?"}},
            ],
        }
    ]
    for arm in doc["arms"]:
        arm["tasks"] = "personal"
    study = launch_study(study_create_from_protocol(doc=doc, author=owner), owner)
    people = {name: enroll(study, now=T0) for name in ("ana", "bruno", "carla")}
    Identity.objects.filter(participant=people["ana"]).update(date_shift_days=SHIFT)
    task_show(participant=people["ana"], now=T0 + dt.timedelta(hours=1))
    conversation = task_conversation_start(
        participant=people["ana"], now=T0 + dt.timedelta(hours=2)
    )
    chat_services.message_send(
        participant=people["ana"],
        conversation=conversation,
        text="My sister",
        now=T0 + dt.timedelta(hours=2, minutes=10, seconds=40),
    )
    task_show(participant=people["bruno"], now=T0 + dt.timedelta(days=1, hours=3))
    task_show(participant=people["carla"], now=T0 + dt.timedelta(hours=1))
    participant_withdraw(participant=people["carla"], mode="delete", by="participant")
    return study, people, conversation


def pseudo(export, kind: str, pk: int) -> str:
    return Pseudonymizer(bytes.fromhex(export.key))(kind, pk)


def test_the_tasks_table_says_what_was_shown_and_whether_the_participant_chatted_after(
    tasks_study, owner
):
    study, people, conversation = tasks_study
    # arm is not a quasi-identifier here, so no task cell is suppressed
    export = build(
        study, owner, tables=["tasks"], quasi_identifiers=["age_band"], include_time_of_day=True
    )
    files = unzip(export)
    rows = {r["participant_id"]: r for r in rows_of("tasks.csv", files["tasks.csv"])}
    ana, bruno = (
        pseudo(export, "participant", people["ana"].pk),
        pseudo(export, "participant", people["bruno"].pk),
    )
    assert set(rows) == {ana, bruno}  # Carla withdrew with deletion
    assert rows[ana] == {
        "participant_id": ana,
        "day": "0",
        "task_list": "personal",
        "task": "grateful",
        "conversation_offered": "true",
        "shown_day": "0",
        "shown_time": "10:00",
        "conversation_started": "true",
        "conversation_id": pseudo(export, "conversation", conversation.pk),
        "chatted_after": "true",
        "minutes_to_first_message": "71",
    }
    assert (rows[bruno]["day"], rows[bruno]["task"], rows[bruno]["chatted_after"]) == (
        "1",
        "friend",
        "false",
    )
    assert rows[bruno]["minutes_to_first_message"] == ""
    assert rows[bruno]["conversation_id"] == ""
    # every column is in the codebook
    codebook = json.loads(files["codebook.json"])
    documented = [c["name"] for c in codebook["tables"]["tasks"]["columns"]]
    assert documented == list(rows[ana])


def test_shifted_dates_move_the_task_day_by_the_participants_offset(tasks_study, owner):
    study, people, _ = tasks_study
    export = build(study, owner, tables=["tasks"], dates="shifted", quasi_identifiers=["age_band"])
    rows = rows_of("tasks.csv", unzip(export)["tasks.csv"])
    ana = next(
        r for r in rows if r["participant_id"] == pseudo(export, "participant", people["ana"].pk)
    )
    shifted = (dt.date(2026, 3, 2) - dt.timedelta(days=SHIFT)).isoformat()
    assert (ana["date"], ana["shown_date"]) == (shifted, shifted)
    assert "day" not in ana and "shown_day" not in ana


def test_the_task_list_is_suppressed_with_the_arm(tasks_study, owner):
    # given: k = 5 over the arm with two participants, so every arm is suppressed
    study, _, _ = tasks_study
    export = build(study, owner, tables=["participants", "tasks"], quasi_identifiers=["arm"])
    files = unzip(export)
    rows = rows_of("tasks.csv", files["tasks.csv"])
    assert {r["task_list"] for r in rows} == {"*"}
    assert {r["task"] for r in rows} == {"*"}
    assert {r["chatted_after"] for r in rows} == {"true", "false"}
    codebook = json.loads(files["codebook.json"])
    columns = {c["name"]: c for c in codebook["tables"]["tasks"]["columns"]}
    assert columns["task_list"]["suppressed_with"] == ["arm"]


def test_the_tasks_table_is_exported_only_when_asked_for(tasks_study, owner):
    study, _, _ = tasks_study
    export = build(study, owner)
    assert "tasks.csv" not in unzip(export)
