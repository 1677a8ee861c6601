"""The anonymized dataset export, end to end: a study whose participants' vault identifiers also
appear in their chats, imported history and free-text answers is exported in every format, and
every byte of the zip is searched for anything that could identify them."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest
from django.db import connection
from django.utils import timezone

from studyplatform.chat.models import Conversation, Message
from studyplatform.core.models import AuditEvent
from studyplatform.exports.codebook import TABLES
from studyplatform.exports.models import DatasetExport
from studyplatform.exports.pseudonyms import Pseudonymizer
from studyplatform.exports.services import (
    ExportError,
    export_build,
    export_create,
    export_expire_due,
    export_path,
)
from studyplatform.participants.models import (
    Allocation,
    ConsentRecord,
    Identity,
    Participant,
)
from studyplatform.participants.services import JoinContext, participant_withdraw
from surveys.models import Invitation, Response, TaskAssignment

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2024, 3, 5, 14, 37, 21, tzinfo=dt.UTC)
CONSENT = {"agree": True, "adult": True, "share_chats": True, "import_history": True}

PEOPLE = [
    # name, email, panel id, age, gender, shares chats, withdrawal
    (
        "Beatriz Albuquerque",
        "bia.albuq@example.org",
        "5f8a9c7e2b1d4a6f9e0c3b7a",
        24,
        "woman",
        True,
        "",
    ),
    (
        "Joaquim Figueiredo",
        "joaquim.fig@example.net",
        "60b2d4f6a8c0e1f3a5b7c9d1",
        37,
        "man",
        True,
        "",
    ),
    (
        "Heloisa Pimentel",
        "helo.pimentel@example.com",
        "61c3e5a7b9d1f2a4c6e8a0b2",
        45,
        "woman",
        True,
        "",
    ),
    (
        "Teodoro Brandao",
        "teo.brandao@example.org",
        "62d4f6b8c0e2a3b5d7f9b1c3",
        52,
        "man",
        False,
        "",
    ),
    (
        "Rodrigo Vasconcelos",
        "rodrigo.vasc@example.org",
        "63e5a7c9d1f3b4c6e8a0c2d4",
        33,
        "man",
        True,
        "keep",
    ),
    (
        "Marcela Quintanilha",
        "marcela.quin@example.org",
        "64f6b8d0e2a4c5d7f9b1d3e5",
        61,
        "woman",
        True,
        "delete",
    ),
]


@dataclass
class Person:
    participant: Participant
    name: str
    email: str
    panel_pid: str
    enrolled_at: dt.datetime
    db_ids: list[int]


def bump_ids(*models, start: int = 7_300_000) -> None:
    """Move id sequences far from small numbers, so a leaked internal id is recognisable as a
    standalone token (and cannot be confused with a day count or an answer)."""
    with connection.cursor() as cursor:
        for index, model in enumerate(models):
            table, value = model._meta.db_table, start + index * 104_729
            if connection.vendor == "sqlite":
                cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
                cursor.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, value]
                )
            else:
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, value]
                )


def add_chat(person: Person, study, *, imported: bool) -> list[int]:
    participant = person.participant
    arm = participant.allocation.arm
    first = person.name.split()[0]
    when = person.enrolled_at + dt.timedelta(days=2 if imported else 1, hours=3)
    conversation = Conversation.objects.create(
        participant=participant,
        arm=arm,
        title=f"Chat with {person.name}",
        created_at=when,
        updated_at=when,
        imported=imported,
        import_source="chatgpt" if imported else "",
        external_id=f"ext-{participant.pk}" if imported else "",
    )
    texts = [
        ("user", f"Hi, I'm {person.name}. Write to me at {person.email} please."),
        ("assistant", f"Nice to meet you, {first}! I'll remember {person.email}."),
        (
            "user",
            f"my prolific id is {person.panel_pid} and my study code is "
            f"{participant.code}. {first.lower()} again.",
        ),
    ]
    ids = [conversation.pk]
    parent = None
    for offset, (role, text) in enumerate(texts):
        parent = Message.objects.create(
            conversation=conversation,
            participant=participant,
            parent=parent,
            role=role,
            content=text,
            created_at=when + dt.timedelta(minutes=offset),
            arm=None if imported else arm,
            protocol_version=None if imported else study.current_version,
            imported=imported,
            external_id=f"m{offset}-{participant.pk}" if imported else "",
            model_reported="gpt-test",
        )
        ids.append(parent.pk)
    return ids


def add_task(person: Person, study) -> list[int]:
    """The daily conversation task shown to the participant an hour after enrolling (the
    tasks table must carry no real date or database id either)."""
    conversation = Conversation.objects.filter(participant=person.participant, imported=False)
    first = Message.objects.filter(conversation__in=conversation, role="user").order_by("pk")
    message = first.first()
    row = TaskAssignment.objects.create(
        participant=person.participant,
        study=study,
        study_day=0,
        local_date=person.enrolled_at.date(),
        list_key="personal",
        task_key="grateful",
        text={"en": "Talk about something you are grateful for."},
        open_new_conversation=True,
        protocol_version=study.current_version,
        shown_at=person.enrolled_at + dt.timedelta(hours=1),
        conversation=message.conversation if message else None,
        conversation_started_at=person.enrolled_at + dt.timedelta(hours=1) if message else None,
        first_message=message,
        first_message_at=message.created_at if message else None,
    )
    return [row.pk]


def add_response(person: Person, study) -> list[int]:
    participant = person.participant
    invitation = Invitation.objects.create(
        participant=participant,
        study=study,
        entry_key="baseline",
        # Occurrence keys of dated schedules are dates: one that leaked would be caught.
        occurrence_key=person.enrolled_at.date().isoformat(),
        instruments=["ucla3"],
        protocol_version=study.current_version,
        status=Invitation.Status.COMPLETED,
        opens_at=person.enrolled_at,
        closes_at=person.enrolled_at + dt.timedelta(days=3),
        created_at=person.enrolled_at,
    )
    response = Response.objects.create(
        invitation=invitation,
        participant=participant,
        instrument_key="ucla3",
        instrument_version="2004",
        status=Response.Status.SUBMITTED,
        # "comment" is free text typed by the participant (not an item of the instrument).
        answers={
            "ucla3_1": 2,
            "ucla3_2": 1,
            "ucla3_3": 3,
            "comment": f"I am {person.name} ({person.email}), panel {person.panel_pid}.",
        },
        scores={"total": 6},
        valid=True,
        protocol_version=study.current_version,
        started_at=person.enrolled_at + dt.timedelta(hours=1),
        updated_at=person.enrolled_at + dt.timedelta(hours=1),
        submitted_at=person.enrolled_at + dt.timedelta(hours=1, minutes=7),
    )
    return [invitation.pk, response.pk]


@pytest.fixture
def world(recruiting_study, enroll, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    bump_ids(
        Participant,
        Identity,
        ConsentRecord,
        Allocation,
        Conversation,
        Message,
        Invitation,
        Response,
        TaskAssignment,
    )
    people: dict[str, Person] = {}
    for index, (name, email, pid, age, gender, shares, _withdrawal) in enumerate(PEOPLE):
        enrolled_at = T0 + dt.timedelta(minutes=index * 13, seconds=index)
        participant = enroll(
            recruiting_study,
            answers={"age": age, "uses_chatbots": True, "gender": gender},
            choices={**CONSENT, "share_chats": shares},
            signature_name=name,
            name=name,
            email=email,
            join=JoinContext(panel="prolific", panel_pid=pid),
            now=enrolled_at,
        )
        # Shifts larger than any offset in the data: a shifted date can never equal a real one.
        Identity.objects.filter(participant=participant).update(date_shift_days=200 + index * 17)
        assert participant.pk > 7_000_000  # the id bump took effect
        person = Person(participant, name, email, pid, enrolled_at, [participant.pk])
        person.db_ids += list(
            ConsentRecord.objects.filter(participant=participant).values_list("pk", flat=True)
        )
        person.db_ids += [participant.allocation.pk, participant.identity.pk]
        person.db_ids += add_chat(person, recruiting_study, imported=False)
        person.db_ids += add_chat(person, recruiting_study, imported=True)
        person.db_ids += add_response(person, recruiting_study)
        person.db_ids += add_task(person, recruiting_study)
        people[name.split()[0].lower()] = person
    for person, (*_, withdrawal) in zip(people.values(), PEOPLE, strict=True):
        if withdrawal:
            participant_withdraw(participant=person.participant, mode=withdrawal, by="participant")
    return recruiting_study, people


def build(study, owner, **options) -> DatasetExport:
    export = export_create(study=study, user=owner, options=options, enqueue=False)
    export = export_build(export=export)
    assert export.status == DatasetExport.Status.DONE, export.error
    return export


def unzip(export: DatasetExport) -> dict[str, bytes]:
    with zipfile.ZipFile(export_path(export)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rows_of(name: str, data: bytes) -> list[dict]:
    if name.endswith(".csv"):
        import csv

        return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]
    return pq.read_table(io.BytesIO(data)).to_pylist()


def columns_of(name: str, data: bytes) -> list[str]:
    if name.endswith(".csv"):
        return data.decode("utf-8").splitlines()[0].split(",")
    if name.endswith(".jsonl"):
        keys: list[str] = []
        for row in rows_of(name, data):
            keys += [k for k in row if k not in keys]
        return keys
    return pq.read_schema(io.BytesIO(data)).names


def stat_rows_of(name: str, data: bytes) -> list[dict]:
    """The rows of a .sav/.dta file as SPSS/Stata store them (codes, file variable names)."""
    import tempfile
    from pathlib import Path

    import pyreadstat

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_bytes(data)
        reader = pyreadstat.read_sav if name.endswith(".sav") else pyreadstat.read_dta
        frame, _ = reader(str(path))
    return frame.to_dict("records")


def texts_of(files: dict[str, bytes]) -> dict[str, str]:
    """Every file as text: raw bytes decoded, plus decoded values for (compressed) Parquet and
    for SPSS/Stata files (which store long text in segments)."""
    out = {}
    for name, data in files.items():
        text = data.decode("utf-8", errors="replace")
        if name.endswith(".parquet"):
            text += "\n" + json.dumps(rows_of(name, data), ensure_ascii=False, default=str)
        if name.endswith((".sav", ".dta")):
            text += "\n" + json.dumps(stat_rows_of(name, data), ensure_ascii=False, default=str)
        out[name] = text
    return out


def pid_of(export: DatasetExport, person: Person) -> str:
    return Pseudonymizer(bytes.fromhex(export.key))("participant", person.participant.pk)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "sav", "dta", "r"])
@pytest.mark.parametrize("dates", ["relative", "shifted"])
def test_no_identifier_timestamp_or_database_id_appears_anywhere_in_the_zip(
    world, owner, fmt, dates
):
    # given: participants whose name, e-mail, panel id and code appear in their own texts
    study, people = world
    # when: every table is exported (usage features too), chats of non-sharers as metadata,
    # with time of day
    export = build(
        study,
        owner,
        format=fmt,
        dates=dates,
        chat_mode="metadata",
        include_time_of_day=True,
        tables=list(TABLES),
    )
    files = texts_of(unzip(export))
    # then: no file contains any of it, in any case
    ext = "csv" if fmt == "r" else fmt
    assert {f"usage_daily.{ext}", f"usage_waves.{ext}"} <= set(files)
    for person in people.values():
        # The real dates of everything in the fixture (enrollment, surveys, chats on days 1
        # and 2), in UTC and local calendars.
        real_dates = {
            (person.enrolled_at + dt.timedelta(days=d, hours=h)).date().isoformat()
            for d in range(-1, 4)
            for h in (0, -5)
        }
        forbidden = [
            *real_dates,
            person.email,
            person.name,
            *person.name.split(),
            person.email.split("@")[0],
            person.panel_pid,
            person.participant.code,
            person.enrolled_at.isoformat(),
            person.enrolled_at.date().isoformat(),
            person.enrolled_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for name, text in files.items():
            for value in forbidden:
                assert value.casefold() not in text.casefold(), f"{value!r} found in {name}"
            for db_id in person.db_ids:
                pattern = rf"(?<![0-9A-Za-z]){db_id}(?![0-9A-Za-z])"
                assert not re.search(pattern, text), f"database id {db_id} found in {name}"
    # and the anonymizer's detections are counted by type
    assert export.detection_counts["EMAIL"] >= 5 * 3
    assert export.detection_counts["PERSON"] >= 5


def test_shifted_dates_preserve_intervals_and_relative_dates_count_from_enrollment(world, owner):
    # given: Beatriz's chat message one day and three hours after she enrolled
    study, people = world
    bia = people["beatriz"]
    shift = Identity.objects.get(participant=bia.participant).date_shift_days
    # when: exported with relative and with shifted dates
    relative = build(study, owner, format="jsonl", dates="relative", include_time_of_day=True)
    shifted = build(study, owner, format="jsonl", dates="shifted")
    # then: relative rows count days from enrollment; shifted rows move real dates back
    rows = rows_of("messages.jsonl", unzip(relative)["messages.jsonl"])
    mine = [r for r in rows if r["participant_id"] == pid_of(relative, bia)]
    assert {r["created_day"] for r in mine} == {1}
    assert mine[0]["created_time"] == "14:37"  # 17:37 UTC in America/Sao_Paulo
    assert "created_date" not in mine[0]
    rows = rows_of("participants.jsonl", unzip(shifted)["participants.jsonl"])
    row = next(r for r in rows if r["participant_id"] == pid_of(shifted, bia))
    local_enrollment = dt.date(2024, 3, 5)
    assert row["enrolled_date"] == (local_enrollment - dt.timedelta(days=shift)).isoformat()
    assert "enrolled_day" not in row and "enrolled_time" not in row
    messages = rows_of("messages.jsonl", unzip(shifted)["messages.jsonl"])
    created = {r["created_date"] for r in messages if r["participant_id"] == row["participant_id"]}
    assert created == {(local_enrollment + dt.timedelta(days=1 - shift)).isoformat()}


def test_chats_of_participants_who_did_not_consent_are_left_out_or_reduced_to_metadata(
    world, owner
):
    # given: Teodoro did not consent to share his chats
    study, people = world
    teo, bia = people["teodoro"], people["beatriz"]
    # when: exported with each chat mode
    excluded = build(study, owner, format="csv", chat_mode="exclude")
    metadata = build(study, owner, format="csv", chat_mode="metadata")
    # then: "exclude" has none of his messages; "metadata" has one row per message, no text
    for table in ("messages.csv", "imported.csv"):
        rows = rows_of(table, unzip(excluded)[table])
        assert pid_of(excluded, bia) in {r["participant_id"] for r in rows}
        assert pid_of(excluded, teo) not in {r["participant_id"] for r in rows}
        rows = rows_of(table, unzip(metadata)[table])
        his = [r for r in rows if r["participant_id"] == pid_of(metadata, teo)]
        assert len(his) == 3
        assert all(r["text"] == "" and r["text_included"] == "false" for r in his)
        assert all(int(r["n_chars"]) > 0 for r in his)
        hers = [r for r in rows if r["participant_id"] == pid_of(metadata, bia)]
        assert all(r["text_included"] == "true" and r["text"] for r in hers)
    # and the text that is included has its identifiers replaced by surrogates
    rows = rows_of("messages.csv", unzip(metadata)["messages.csv"])
    first = next(r for r in rows if r["participant_id"] == pid_of(metadata, bia))
    assert first["text"] == "Hi, I'm [PERSON_1]. Write to me at [EMAIL_1] please."
    participants = rows_of("participants.csv", unzip(metadata)["participants.csv"])
    shares = {r["participant_id"]: r["shares_chats"] for r in participants}
    assert shares[pid_of(metadata, teo)] == "false"


def test_free_text_answers_are_anonymized_with_the_participants_own_identifiers(world, owner):
    # given: Joaquim typed his name, e-mail and panel id into a survey answer
    study, people = world
    joaquim = people["joaquim"]
    # when
    export = build(study, owner, format="jsonl", tables=["responses"])
    files = unzip(export)
    # then: the answer is there, scrubbed; numeric answers are numbers
    assert set(files) == {
        "responses.jsonl",
        "answers.jsonl",
        "codebook.json",
        "README.md",
        "manifest.json",
    }
    rows = [
        r
        for r in rows_of("answers.jsonl", files["answers.jsonl"])
        if r["participant_id"] == pid_of(export, joaquim)
    ]
    comment = next(r for r in rows if r["item_id"] == "comment")
    assert comment["value_text"] == "I am [PERSON_1] ([EMAIL_1]), panel [PERSON_2]."
    assert next(r for r in rows if r["item_id"] == "ucla3_3")["value_number"] == 3.0


def test_withdrawn_with_deletion_never_appears_and_withdrawn_keep_appears_as_withdrawn(
    world, owner
):
    # given: Rodrigo withdrew keeping his data; Marcela withdrew asking for deletion
    study, people = world
    rodrigo, marcela = people["rodrigo"], people["marcela"]
    # when
    export = build(study, owner, format="csv", chat_mode="metadata")
    files = unzip(export)
    # then: Marcela's pseudonym is in no file (not even the allocation); Rodrigo is withdrawn
    gone = pid_of(export, marcela)
    assert all(gone not in data.decode("utf-8", "replace") for data in files.values())
    rows = rows_of("participants.csv", files["participants.csv"])
    assert len(rows) == 5
    status = {r["participant_id"]: r["status"] for r in rows}
    assert status[pid_of(export, rodrigo)] == "withdrawn"
    allocation = rows_of("allocation.csv", files["allocation.csv"])
    assert pid_of(export, rodrigo) in {r["participant_id"] for r in allocation}
    assert len(allocation) == 5


def test_pilot_participants_are_left_out_unless_asked_for(world, owner):
    # given: Heloisa is (made) a pilot tester
    study, people = world
    helo = people["heloisa"]
    Participant.objects.filter(pk=helo.participant.pk).update(is_pilot=True)
    # when
    default = build(study, owner, format="csv", tables=["participants"])
    with_pilots = build(study, owner, format="csv", tables=["participants"], include_pilot=True)
    # then
    ids = {
        r["participant_id"] for r in rows_of("participants.csv", unzip(default)["participants.csv"])
    }
    assert pid_of(default, helo) not in ids
    rows = rows_of("participants.csv", unzip(with_pilots)["participants.csv"])
    assert pid_of(with_pilots, helo) in {r["participant_id"] for r in rows}


def test_two_exports_are_unlinkable_unless_the_key_is_deliberately_reused(world, owner):
    # given: a first export
    study, _ = world
    first = build(study, owner, format="csv", tables=["participants"])
    # when: a second export with its own key, and a third reusing the first's key
    second = build(study, owner, format="csv", tables=["participants"])
    third = build(study, owner, format="csv", tables=["participants"], reuse_key_of=first.pk)

    def ids(export):
        return {
            r["participant_id"]
            for r in rows_of("participants.csv", unzip(export)["participants.csv"])
        }

    # then: no pseudonym is shared with a fresh key; all are shared with the reused key
    assert len(ids(first)) == 5
    assert ids(first).isdisjoint(ids(second))
    assert ids(first) == ids(third)
    assert first.key_fingerprint != second.key_fingerprint
    assert third.key_fingerprint == first.key_fingerprint
    assert third.reuse_key_of == first and third.options["reuse_key_of"] == first.pk
    assert "reused" in unzip(third)["README.md"].decode()
    # and the key itself is nowhere but (encrypted) in the database
    for export in (first, third):
        assert all(
            first.key not in data.decode("utf-8", "replace") for data in unzip(export).values()
        )


def test_a_key_can_only_be_reused_from_an_export_of_the_same_study(world, owner, rct_doc):
    # given: an export of another study
    from studyplatform.studies.services import study_create_from_protocol

    study, _ = world
    rct_doc["study"]["slug"] = "other-study"
    other = study_create_from_protocol(doc=rct_doc, author=owner)
    foreign = export_create(study=other, user=owner, options={}, enqueue=False)
    # when / then: reusing its key is refused and nothing is written
    with pytest.raises(ExportError) as caught:
        export_create(study=study, user=owner, options={"reuse_key_of": foreign.pk})
    assert caught.value.errors == {"reuse_key_of": "no such export of this study"}
    assert DatasetExport.objects.filter(study=study).count() == 0


def test_demographics_are_k_anonymous_with_suppression_reported(world, owner):
    # given: five exportable participants with distinct age bands
    study, _ = world
    # when: exported with k = 3 over age band, gender and arm
    export = build(study, owner, format="jsonl", tables=["participants", "allocation"], k=3)
    files = unzip(export)
    rows = rows_of("participants.jsonl", files["participants.jsonl"])
    # then: every combination of the quasi-identifiers occurs at least 3 times
    classes: dict[tuple, int] = {}
    for row in rows:
        key = (row["age_band"], row["gender"], row["arm"])
        classes[key] = classes.get(key, 0) + 1
    assert min(classes.values()) >= 3
    assert all(row["age_band"] == "*" for row in rows)  # five distinct bands cannot survive
    # and allocation shows the arm exactly as published in participants
    arms = {r["participant_id"]: r["arm"] for r in rows}
    for row in rows_of("allocation.jsonl", files["allocation.jsonl"]):
        assert row["arm"] == arms[row["participant_id"]]
    # and the suppression is reported in the README and the codebook
    report = json.loads(files["codebook.json"])["anonymization"]["k_anonymity"]
    assert report["suppressed_cells"]["age_band"] == 5
    assert report["k"] == 3 and report["satisfied"] is True
    assert "- age_band: 5" in files["README.md"].decode()


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_every_column_of_every_file_is_in_the_codebook_and_the_manifest_hashes_match(
    world, owner, fmt
):
    # given / when: a full export (every table, usage features included) with time of day
    study, _ = world
    export = build(
        study,
        owner,
        format=fmt,
        include_time_of_day=True,
        chat_mode="metadata",
        tables=list(TABLES),
    )
    files = unzip(export)
    codebook = json.loads(files["codebook.json"])
    manifest = json.loads(files["manifest.json"])
    # then: each data file's columns are exactly the documented ones, in order
    documented = {t["file"]: t for t in codebook["tables"].values()}
    data_files = [n for n in files if n.endswith("." + fmt)]
    assert sorted(data_files) == sorted(documented)
    # + tasks, compliance and classifier_labels (empty here: no classifiers, no requirements)
    assert len(data_files) == 12
    for name in data_files:
        described = documented[name]["columns"]
        assert all(c["meaning"] and c["type"] for c in described)
        # (an empty JSON Lines file has no rows to carry column names)
        if fmt != "jsonl" or documented[name]["rows"]:
            assert columns_of(name, files[name]) == [c["name"] for c in described], name
        assert documented[name]["rows"] == len(rows_of(name, files[name]))
        assert documented[name]["consent_basis"]
    # and the manifest lists every other file with its SHA-256
    assert set(manifest["files"]) == set(files) - {"manifest.json"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"]
        assert entry["bytes"] == len(files[name])
    # and the zip's own hash is recorded on the export
    assert hashlib.sha256(export_path(export).read_bytes()).hexdigest() == export.sha256
    # and instruments, protocol versions and settings are documented
    ucla3 = next(i for i in codebook["instruments"] if i["key"] == "ucla3")
    assert ucla3["items"][0]["text"] is None  # wording not licensed for redistribution
    assert ucla3["scores"][0]["range"] == [3, 9]
    assert codebook["protocol_versions"][0]["content_hash"] == study.current_version.content_hash
    assert codebook["anonymization"]["detection_counts"]["EMAIL"] > 0


def test_each_replys_outcome_code_is_exported_and_documented(world, owner):
    # given: Beatriz's study chat, answered by replies that ended in each recorded way
    study, people = world
    person = people["beatriz"]
    question = Message.objects.filter(
        participant=person.participant, imported=False, role="user"
    ).first()
    outcomes = [
        ("complete", ""),
        ("cancelled", "stopped"),
        ("cancelled", "disconnected"),
        ("error", "upstream_502"),
        ("error", "internal_redis"),
        ("error", "internal_interrupted"),
    ]
    replies = {
        Message.objects.create(
            conversation=question.conversation,
            participant=person.participant,
            parent=question,
            role="assistant",
            content="Part of a reply",
            status=status,
            error_code=code,
            created_at=question.created_at + dt.timedelta(seconds=index + 1),
            arm=question.arm,
            protocol_version=question.protocol_version,
        ).pk: (status, code)
        for index, (status, code) in enumerate(outcomes)
    }
    # when: the messages table is exported (the arm not treated as a quasi-identifier here, so
    # nothing in the rows is suppressed)
    export = build(
        study,
        owner,
        format="jsonl",
        tables=["messages"],
        quasi_identifiers=["age_band", "gender"],
    )
    files = unzip(export)
    # then: every reply's row carries its status and outcome code, every other row an empty code
    pseudo = Pseudonymizer(bytes.fromhex(export.key))
    rows = {row["message_id"]: row for row in rows_of("messages.jsonl", files["messages.jsonl"])}
    for pk, (status, code) in replies.items():
        row = rows[pseudo("message", pk)]
        assert (row["status"], row["error_code"]) == (status, code)
    assert {row["error_code"] for row in rows.values()} == {code for _, code in outcomes}
    # and the codebook documents the column, naming the codes an analyst has to tell apart
    codebook = json.loads(files["codebook.json"])
    columns = {c["name"]: c for c in codebook["tables"]["messages"]["columns"]}
    meaning = columns["error_code"]["meaning"]
    for code in ("stopped", "disconnected", "upstream_", "internal_interrupted"):
        assert code in meaning
    # and an upstream code names the provider's failures, so it is suppressed with the arm
    suppressed = build(study, owner, format="jsonl", tables=["messages"])
    rows = rows_of("messages.jsonl", unzip(suppressed)["messages.jsonl"])
    assert any(row["arm"] == "*" for row in rows)
    assert all(row["error_code"] == "*" for row in rows if row["arm"] == "*")


def test_an_invalid_option_is_refused_with_a_message_and_nothing_is_written(world, owner):
    study, _ = world
    with pytest.raises(ExportError) as caught:
        export_create(
            study=study, user=owner, options={"format": "xlsx", "tables": "messages,emails", "k": 1}
        )
    assert caught.value.errors == {
        "format": "must be one of csv, parquet, jsonl, sav, dta, r",
        "tables": "unknown table(s) emails",
        "k": "must be a whole number from 2 to 100",
    }
    assert not DatasetExport.objects.exists()


def test_building_twice_builds_once(world, owner):
    study, _ = world
    export = export_create(study=study, user=owner, options={"tables": ["consent"]}, enqueue=False)
    first = export_build(export=export)
    name = first.file_name
    again = export_build(export=export)
    assert again.status == DatasetExport.Status.DONE and again.file_name == name


# ---------------------------------------------------------------------------------------------
# API


URL = "/api/studies/{slug}/exports/"


def test_an_analyst_creates_polls_and_downloads_an_export_and_the_download_is_audited(
    world, member_of, api_as, django_capture_on_commit_callbacks
):
    # given: an analyst of the study
    study, _ = world
    analyst = member_of(study, "analyst")
    client = api_as(analyst)
    # when: they create an export (built by the task once the request commits)
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            URL.format(slug=study.slug), {"format": "parquet", "dates": "shifted"}, format="json"
        )
    assert created.status_code == 201, created.content
    assert created.json()["status"] == "pending"
    detail = client.get(URL.format(slug=study.slug) + f"{created.json()['id']}/")
    listing = client.get(URL.format(slug=study.slug))
    download = client.get(URL.format(slug=study.slug) + f"{created.json()['id']}/download/")
    # then
    assert detail.json()["status"] == "done" and detail.json()["progress"] == 100
    assert [e["id"] for e in listing.json()] == [created.json()["id"]]
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    export = DatasetExport.objects.get()
    assert hashlib.sha256(body).hexdigest() == export.sha256
    assert "participants.parquet" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    event = AuditEvent.objects.get(action="export.download")
    assert event.actor == analyst
    assert event.data["sha256"] == export.sha256
    assert event.data["options"]["dates"] == "shifted"
    assert event.target_id == str(export.pk)


def test_the_owner_may_export_a_monitor_may_not_and_another_studys_member_sees_nothing(
    world, owner, member_of, api_as, rct_doc
):
    from studyplatform.studies.services import study_create_from_protocol

    study, _ = world
    rct_doc["study"]["slug"] = "elsewhere"
    elsewhere = study_create_from_protocol(doc=rct_doc, author=owner)
    monitor = member_of(study, "monitor")
    outsider = member_of(elsewhere, "analyst")
    url = URL.format(slug=study.slug)
    assert api_as(owner).post(url, {"tables": ["consent"]}, format="json").status_code == 201
    export = DatasetExport.objects.get()
    assert api_as(monitor).post(url, {}, format="json").status_code == 403
    assert api_as(monitor).get(url).status_code == 403
    assert api_as(monitor).get(url + f"{export.pk}/download/").status_code == 403
    assert api_as(outsider).get(url).status_code == 404
    assert api_as(outsider).get(url + f"{export.pk}/download/").status_code == 404
    assert not AuditEvent.objects.filter(action="export.download").exists()


# Written by hand, not read from studies/roles.py: only the owner and analysts export data.
EXPORTS_ALLOWED = {
    "owner": True,
    "designer": False,
    "monitor": False,
    "analyst": True,
    "safety_reviewer": False,
}


@pytest.mark.parametrize("role", sorted(EXPORTS_ALLOWED))
def test_each_role_gets_exactly_its_answers_on_the_export_api(
    role, world, owner, member_of, api_as, django_capture_on_commit_callbacks
):
    # given: a finished export, and a member holding `role`
    study, _ = world
    built = export_build(
        export=export_create(
            study=study, user=owner, options={"tables": ["consent"]}, enqueue=False
        )
    )
    client = api_as(member_of(study, role))
    url = URL.format(slug=study.slug)
    allowed = EXPORTS_ALLOWED[role]
    # when
    download = client.get(f"{url}{built.pk}/download/")
    if download.streaming:
        # Read to the end: the test client's wrapper then closes the file without firing
        # close_old_connections (a bare close() would drop the test's connection on PostgreSQL).
        b"".join(download.streaming_content)
    with django_capture_on_commit_callbacks(execute=False):
        answers = {
            "list": client.get(url).status_code,
            "detail": client.get(f"{url}{built.pk}/").status_code,
            "download": download.status_code,
            "create": client.post(url, {"tables": ["consent"]}, format="json").status_code,
        }
    # then: exact statuses; a refused request created, downloaded and audited nothing
    if allowed:
        assert answers == {"list": 200, "detail": 200, "download": 200, "create": 201}
    else:
        assert answers == dict.fromkeys(answers, 403)
    assert DatasetExport.objects.count() == (2 if allowed else 1)
    downloads = AuditEvent.objects.filter(action="export.download").count()
    assert downloads == (1 if allowed else 0)


def test_a_bad_option_is_a_400_naming_it(world, member_of, api_as):
    study, _ = world
    response = api_as(member_of(study, "analyst")).post(
        URL.format(slug=study.slug), {"chat_mode": "everything"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"chat_mode": "must be one of exclude, metadata"}
    assert not DatasetExport.objects.exists()


def test_an_expired_export_is_gone(world, owner, api_as):
    # given: a finished export
    study, _ = world
    export = build(study, owner, tables=["consent"])
    url = URL.format(slug=study.slug) + f"{export.pk}/download/"
    # when: its expiry passes (before the sweep ran) -> 410 already
    DatasetExport.objects.filter(pk=export.pk).update(
        expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    assert api_as(owner).get(url).status_code == 410
    # when: the daily sweep runs -> the file is deleted and the export marked expired
    assert export_expire_due() == 1
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.EXPIRED
    assert not export_path(export).exists()
    assert api_as(owner).get(url).status_code == 410
    assert export_expire_due() == 0
    assert not AuditEvent.objects.filter(action="export.download").exists()


def test_the_command_writes_the_zip_to_out(world, tmp_path):
    # given
    from django.core.management import call_command

    study, _ = world
    out = tmp_path / "dataset.zip"
    # when
    call_command(
        "export_dataset",
        study.slug,
        "--tables",
        "participants,messages",
        "--format",
        "jsonl",
        "--dates",
        "shifted",
        "--chat-mode",
        "metadata",
        "--k",
        "2",
        "--out",
        str(out),
        verbosity=0,
        stdout=io.StringIO(),
    )
    # then
    export = DatasetExport.objects.get()
    assert export.created_by is None and export.options["k"] == 2
    assert hashlib.sha256(out.read_bytes()).hexdigest() == export.sha256
    names = zipfile.ZipFile(out).namelist()
    assert sorted(names) == sorted(
        ["participants.jsonl", "messages.jsonl", "codebook.json", "README.md", "manifest.json"]
    )
