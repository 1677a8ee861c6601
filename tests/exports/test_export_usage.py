"""The usage-feature tables of a dataset export (usage_daily, usage_waves) on a small study built
by hand, where every expected number can be counted from the messages written here."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from studyplatform.chat.models import Conversation, Message
from studyplatform.exports.codebook import DEFAULT_TABLES
from studyplatform.exports.pseudonyms import Pseudonymizer
from studyplatform.participants.models import Identity, Participant
from studyplatform.participants.services import participant_withdraw
from surveys.models import Invitation, Response
from tests.exports.test_export_dataset import build, rows_of, unzip

pytestmark = pytest.mark.django_db

# 14:00 UTC is 11:00 in America/Sao_Paulo (the participants' zone): the same local day for the
# next 12 hours, so the offsets below land on the local days their comments name.
T0 = dt.datetime(2024, 3, 5, 14, 0, tzinfo=dt.UTC)
SHIFT = {"ana": 150, "bruno": 230}


def chat(participant, when: dt.datetime, roles: list[str], *, imported: bool = False) -> None:
    conversation = Conversation.objects.create(
        participant=participant,
        arm=participant.allocation.arm,
        created_at=when,
        updated_at=when,
        imported=imported,
        import_source="chatgpt" if imported else "",
    )
    for offset, role in enumerate(roles):
        Message.objects.create(
            conversation=conversation,
            participant=participant,
            role=role,
            content="I am happy today" if role == "user" else "Glad to hear it.",
            created_at=when + dt.timedelta(minutes=offset),
            imported=imported,
        )


def weekly_survey(participant, study, *, day: int, total: int) -> None:
    opens = T0 + dt.timedelta(days=day)
    invitation = Invitation.objects.create(
        participant=participant,
        study=study,
        entry_key="weekly",
        # A real occurrence key is a date: it must never reach the export.
        occurrence_key=(T0 + dt.timedelta(days=day)).date().isoformat(),
        wave=day // 7,
        instruments=["ucla3"],
        protocol_version=study.current_version,
        status=Invitation.Status.COMPLETED,
        opens_at=opens,
        closes_at=opens + dt.timedelta(days=2),
        created_at=opens,
    )
    Response.objects.create(
        invitation=invitation,
        participant=participant,
        instrument_key="ucla3",
        instrument_version="2004",
        status=Response.Status.SUBMITTED,
        answers={"ucla3_1": 1, "ucla3_2": 2, "ucla3_3": 2},
        scores={"total": total},
        valid=True,
        protocol_version=study.current_version,
        started_at=opens + dt.timedelta(hours=1),
        updated_at=opens + dt.timedelta(hours=1),
        submitted_at=opens + dt.timedelta(hours=1, minutes=5),
    )


@pytest.fixture
def usage_study(recruiting_study, enroll, settings, tmp_path):
    """Ana shares her chats, Bruno does not, Carla withdrew asking for deletion."""
    settings.MEDIA_ROOT = tmp_path / "media"
    study = recruiting_study
    people = {}
    for name, shares in (("ana", True), ("bruno", False), ("carla", True)):
        choices = {"agree": True, "adult": True, "share_chats": shares, "import_history": True}
        people[name] = enroll(study, choices=choices, now=T0)
        if name in SHIFT:
            Identity.objects.filter(participant=people[name]).update(date_shift_days=SHIFT[name])
    # Ana: day 0 two messages and a reply, day 2 one message; imported history never counts.
    chat(people["ana"], T0 + dt.timedelta(hours=1), ["user", "assistant", "user"])
    chat(people["ana"], T0 + dt.timedelta(days=2), ["user"])
    chat(people["ana"], T0 - dt.timedelta(days=30), ["user", "user", "user"], imported=True)
    # Bruno: day 1, three messages.
    chat(people["bruno"], T0 + dt.timedelta(days=1), ["user", "user", "user"])
    # Carla: day 1, one message; then she withdraws with deletion.
    chat(people["carla"], T0 + dt.timedelta(days=1), ["user"])
    # Weekly surveys at day 7 (window days 0-6) and day 14 (window days 7-13).
    weekly_survey(people["ana"], study, day=7, total=5)
    weekly_survey(people["ana"], study, day=14, total=7)
    weekly_survey(people["bruno"], study, day=7, total=4)
    participant_withdraw(participant=people["carla"], mode="delete", by="participant")
    return study, people


def pid(export, participant: Participant) -> str:
    return Pseudonymizer(bytes.fromhex(export.key))("participant", participant.pk)


def test_usage_daily_has_one_row_per_participant_and_local_day_counted_from_their_messages(
    usage_study, owner
):
    # given: Ana (3 messages over days 0 and 2), Bruno (3 on day 1, no chat sharing), Carla gone
    study, people = usage_study
    # when
    export = build(study, owner, format="jsonl", tables=["usage_daily"])
    files = unzip(export)
    rows = rows_of("usage_daily.jsonl", files["usage_daily.jsonl"])
    # then: messages per participant and day since enrollment, imported history not counted
    ana, bruno = pid(export, people["ana"]), pid(export, people["bruno"])
    got = {(r["participant_id"], r["day"]): r for r in rows}
    assert {k: r["messages_sent"] for k, r in got.items()} == {
        (ana, 0): 2,
        (ana, 2): 1,
        (bruno, 1): 3,
    }
    assert got[(ana, 0)]["assistant_messages"] == 1
    assert got[(ana, 0)]["words_sent"] == 8
    assert got[(ana, 0)]["active"] is True
    assert got[(ana, 0)]["sessions"] == 1
    # and the text-marker rates are numbers (first person "I": 1 token in 4), also for Bruno
    assert got[(ana, 0)]["first_person_rate"] == pytest.approx(0.25)
    assert got[(bruno, 1)]["positive_affect_rate"] > 0
    assert "text" not in rows[0] and "date" not in rows[0]
    # and Carla, withdrawn with deletion, is nowhere
    carla = pid(export, people["carla"])
    assert all(carla not in data.decode("utf-8", "replace") for data in files.values())
    # and the consent basis says non-sharers' usage is included, without text
    basis = json.loads(files["codebook.json"])["tables"]["usage_daily"]["consent_basis"]
    assert "share_chats = false" in basis and "never any text" in basis


def test_usage_daily_in_shifted_mode_gives_shifted_local_dates(usage_study, owner):
    # given
    study, people = usage_study
    # when
    export = build(study, owner, format="csv", dates="shifted", tables=["usage_daily"])
    rows = rows_of("usage_daily.csv", unzip(export)["usage_daily.csv"])
    # then: Ana's days 0 and 2 (5 and 7 March local) moved back by her 150-day offset
    ana = pid(export, people["ana"])
    dates = sorted(r["date"] for r in rows if r["participant_id"] == ana)
    local = [dt.date(2024, 3, 5), dt.date(2024, 3, 7)]
    assert dates == [(d - dt.timedelta(days=150)).isoformat() for d in local]
    assert "day" not in rows[0]


def test_usage_waves_aggregate_the_window_before_each_completed_survey(usage_study, owner):
    # given: Ana answered at day 7 and day 14, Bruno at day 7
    study, people = usage_study
    # when
    export = build(study, owner, format="jsonl", tables=["participants", "usage_waves"], k=2)
    files = unzip(export)
    rows = rows_of("usage_waves.jsonl", files["usage_waves.jsonl"])
    # then: one row per occasion with the 7 days before it (the survey's own day excluded)
    ana, bruno = pid(export, people["ana"]), pid(export, people["bruno"])
    got = {(r["participant_id"], r["occurrence_number"]): r for r in rows}
    assert set(got) == {(ana, 1), (ana, 2), (bruno, 1)}
    first, second = got[(ana, 1)], got[(ana, 2)]
    assert (first["window_start_day"], first["window_end_day"]) == (0, 7)
    assert first["submitted_day"] == 7 and first["wave"] == 1
    assert first["messages_sent"] == 3 and first["days_active"] == 2
    assert first["messages_per_day"] == pytest.approx(3 / 7)
    assert first["ucla3.total"] == 5.0
    assert second["messages_sent"] == 0 and second["ucla3.total"] == 7.0
    assert second["ucla3.total_lag"] == 5.0  # the previous wave's score
    assert got[(bruno, 1)]["messages_sent"] == 3
    assert first["entry"] == "weekly"
    # and the arm is the one published in participants
    published = {
        r["participant_id"]: r["arm"]
        for r in rows_of("participants.jsonl", files["participants.jsonl"])
    }
    assert all(r["arm"] == published[r["participant_id"]] for r in rows)
    # and neither the occurrence key (a date) nor any raw timestamp is written
    text = files["usage_waves.jsonl"].decode()
    assert "2024-" not in text and 'occurrence"' not in text


def test_pilots_are_left_out_of_the_usage_tables_unless_asked_for(usage_study, owner):
    # given: Bruno is (made) a pilot tester
    study, people = usage_study
    Participant.objects.filter(pk=people["bruno"].pk).update(is_pilot=True)
    # when
    default = build(study, owner, format="csv", tables=["usage_daily", "usage_waves"])
    with_pilots = build(
        study, owner, format="csv", tables=["usage_daily", "usage_waves"], include_pilot=True
    )
    # then
    for table in ("usage_daily.csv", "usage_waves.csv"):
        ids = {r["participant_id"] for r in rows_of(table, unzip(default)[table])}
        assert pid(default, people["bruno"]) not in ids
        ids = {r["participant_id"] for r in rows_of(table, unzip(with_pilots)[table])}
        assert pid(with_pilots, people["bruno"]) in ids


def test_usage_tables_are_exported_only_when_asked_for(usage_study, owner):
    # given / when: an export with the default tables
    study, _ = usage_study
    export = build(study, owner, format="csv")
    # then: the six base tables (seven files), no usage tables
    assert export.options["tables"] == list(DEFAULT_TABLES)
    assert not any(name.startswith("usage_") for name in unzip(export))


def test_the_api_accepts_the_usage_tables_and_refuses_a_misspelt_one(
    usage_study, member_of, api_as
):
    # given: an analyst
    study, _ = usage_study
    client = api_as(member_of(study, "analyst"))
    url = f"/api/studies/{study.slug}/exports/"
    # when / then: both usage tables are valid options
    created = client.post(url, {"tables": ["usage_waves", "usage_daily"]}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["options"]["tables"] == ["usage_daily", "usage_waves"]
    # and a misspelt one is a 400 naming it, with nothing written
    refused = client.post(url, {"tables": ["usage_weekly"]}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"tables": "unknown table(s) usage_weekly"}
