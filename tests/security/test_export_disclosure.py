"""Issue 12, data protection rows: k-anonymity holds across the whole export zip, a withdrawal
with deletion removes the participant from exports already built, and a participant's "download
my data" archive never sits in clear under the media root."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from studyplatform.chat.models import Conversation, Message
from studyplatform.core.models import AuditEvent
from studyplatform.exports.codebook import TABLES
from studyplatform.exports.models import DatasetExport
from studyplatform.exports.pseudonyms import Pseudonymizer
from studyplatform.exports.services import export_build, export_create, export_path
from studyplatform.participants.models import Allocation, DataDownload
from studyplatform.participants.services import participant_withdraw
from studyplatform.participants.session import SESSION_KEY
from surveys.models import Invitation, Response

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2024, 3, 5, 14, 0, tzinfo=dt.UTC)
# Per-arm values no other cell of the fixture holds: if any of them shows up in a row of a
# participant whose arm is suppressed, the zip gives the arm away.
ARM_TRACES = {
    "legacy": {"finish": "stop", "prompt": 1117, "completion": 613, "latency": 4421},
    "current": {"finish": "end_turn", "prompt": 2339, "completion": 977, "latency": 8807},
}


def rows_of(name: str, data: bytes) -> list[dict]:
    if name.endswith(".csv"):
        return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]
    return pq.read_table(io.BytesIO(data)).to_pylist()


def unzip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def pid_of(export: DatasetExport, participant) -> str:
    return Pseudonymizer(bytes.fromhex(export.key))("participant", participant.pk)


def chat(participant, study, when: dt.datetime) -> None:
    arm = participant.allocation.arm
    traces = ARM_TRACES[arm.key]
    conversation = Conversation.objects.create(
        participant=participant, arm=arm, title="A chat", created_at=when, updated_at=when
    )
    question = Message.objects.create(
        conversation=conversation,
        participant=participant,
        role="user",
        content="How do I keep a routine when I work nights?",
        created_at=when,
        arm=arm,
        protocol_version=study.current_version,
    )
    Message.objects.create(
        conversation=conversation,
        participant=participant,
        parent=question,
        role="assistant",
        content="Keep the same sleep window every day, also on days off.",
        created_at=when + dt.timedelta(seconds=5),
        arm=arm,
        protocol_version=study.current_version,
        model_requested=arm.model_name,
        model_reported=arm.model_name,
        finish_reason=traces["finish"],
        prompt_tokens=traces["prompt"],
        completion_tokens=traces["completion"],
        latency_ms=traces["latency"],
    )


def survey(participant, study, when: dt.datetime) -> None:
    invitation = Invitation.objects.create(
        participant=participant,
        study=study,
        entry_key="weekly",
        occurrence_key="w1",
        instruments=["ucla3"],
        protocol_version=study.current_version,
        status=Invitation.Status.COMPLETED,
        opens_at=when,
        closes_at=when + dt.timedelta(days=2),
        created_at=when,
    )
    Response.objects.create(
        invitation=invitation,
        participant=participant,
        instrument_key="ucla3",
        instrument_version="2004",
        status=Response.Status.SUBMITTED,
        answers={"ucla3_1": 2, "ucla3_2": 1, "ucla3_3": 3},
        scores={"total": 6},
        valid=True,
        protocol_version=study.current_version,
        started_at=when,
        updated_at=when,
        submitted_at=when + dt.timedelta(minutes=4),
    )


@pytest.fixture
def small_study(recruiting_study, enroll, settings, tmp_path):
    """Four participants; with k = 2 over age band, gender and arm, the two men in their
    forties (one per arm) keep their age band and gender but lose their arm."""
    settings.MEDIA_ROOT = tmp_path / "media"
    arms = {arm.key: arm for arm in recruiting_study.arms.all()}
    people = {}
    for index, (name, age, gender, arm) in enumerate(
        [
            ("ana", 34, "woman", "legacy"),
            ("bia", 36, "woman", "legacy"),
            ("caio", 45, "man", "legacy"),
            ("davi", 47, "man", "current"),
        ]
    ):
        enrolled = T0 + dt.timedelta(hours=index)
        participant = enroll(
            recruiting_study,
            answers={"age": age, "uses_chatbots": True, "gender": gender},
            now=enrolled,
        )
        # The allocation is immutable through the model; the test sets the arms it needs.
        Allocation.objects.filter(participant=participant).update(arm=arms[arm])
        participant.refresh_from_db()
        chat(participant, recruiting_study, enrolled + dt.timedelta(days=1))
        survey(participant, recruiting_study, enrolled + dt.timedelta(days=7))
        people[name] = participant
    return recruiting_study, people


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_no_file_in_the_zip_reveals_an_arm_that_k_anonymity_suppressed(small_study, owner, fmt):
    # given: a study where k-anonymity must suppress the arm of two participants
    study, people = small_study
    # when: every table is exported
    export = export_create(
        study=study,
        user=owner,
        options={
            "tables": list(TABLES),
            "format": fmt,
            "k": 2,
            "quasi_identifiers": ["age_band", "gender", "arm"],
            "chat_mode": "metadata",
            "include_time_of_day": True,
        },
        enqueue=False,
    )
    export = export_build(export=export)
    assert export.status == DatasetExport.Status.DONE, export.error
    files = unzip(export_path(export))
    data = {n: rows_of(n, b) for n, b in files.items() if n.endswith("." + fmt)}
    # then: participants shows their arm as "*"
    suppressed = {pid_of(export, people["caio"]), pid_of(export, people["davi"])}
    published = {r["participant_id"]: r["arm"] for r in data[f"participants.{fmt}"]}
    assert {published[pid] for pid in suppressed} == {"*"}
    assert published[pid_of(export, people["ana"])] == "legacy"
    # and no cell of any of their rows, in any file, holds an arm key, a model name or a
    # value that only one arm produces
    arms = list(study.arms.all())
    giveaways = {a.key for a in arms} | {a.model_name for a in arms}
    for traces in ARM_TRACES.values():
        giveaways |= {str(v) for v in traces.values()}
    checked = set()
    for name, rows in data.items():
        for row in rows:
            if row.get("participant_id") not in suppressed:
                continue
            checked.add(name)
            for column, value in row.items():
                assert str(value) not in giveaways, f"{name}:{column} gives the arm away"
    assert {f"messages.{fmt}", f"allocation.{fmt}", f"usage_waves.{fmt}"} <= checked
    # and the randomization block (which the other members of the block could give away)
    # is empty for them too
    blocks = {r["participant_id"]: r["block_number"] for r in data[f"allocation.{fmt}"]}
    assert all(blocks[pid] in (None, "") for pid in suppressed)
    # and the others keep their arm and model everywhere
    ana = pid_of(export, people["ana"])
    replies = [
        r
        for r in data[f"messages.{fmt}"]
        if r["participant_id"] == ana and r["role"] == "assistant"
    ]
    assert [(r["arm"], r["model_requested"]) for r in replies] == [
        ("legacy", people["ana"].allocation.arm.model_name)
    ]
    # and the codebook and README say what was suppressed, and where
    codebook = json.loads(files["codebook.json"])
    control = codebook["anonymization"]["disclosure_control"]
    assert control["participants_suppressed"] == {"arm": 2}
    assert f"messages.{fmt}:model_requested" in control["columns"]["arm"]
    columns = {c["name"]: c for c in codebook["tables"]["messages"]["columns"]}
    assert columns["model_reported"]["suppressed_with"] == ["arm"]
    assert "arm: suppressed for 2 participant(s)" in files["README.md"].decode()


def test_a_build_that_would_ship_a_suppressed_arm_fails_instead(small_study, owner, monkeypatch):
    # given: a writer that forgets to apply the disclosure plan
    from studyplatform.exports import writers

    monkeypatch.setattr(
        writers.SuppressingWriter,
        "write_batch",
        lambda self, rows: self._inner.write_batch(rows),
    )
    study, _ = small_study
    export = export_create(
        study=study,
        user=owner,
        options={"tables": ["participants", "messages"], "k": 2, "chat_mode": "metadata"},
        enqueue=False,
    )
    # when
    export = export_build(export=export)
    # then: the post-build check refuses to ship it
    assert export.status == DatasetExport.Status.FAILED
    assert "DisclosureLeak" in export.error and "arm" in export.error
    assert not export.file_name
    assert not list((Path(export_path(export)).parent).glob("*.zip"))


# ---------------------------------------------------------------------------------------------
# Withdrawal with deletion and exports already built

URL = "/api/studies/{slug}/exports/"


def test_withdrawal_with_deletion_revokes_the_built_exports_that_hold_the_participant(
    small_study, owner, api_as, django_capture_on_commit_callbacks
):
    # given: a finished export that contains Caio
    study, people = small_study
    caio = people["caio"]
    export = export_build(
        export=export_create(
            study=study, user=owner, options={"tables": ["participants"]}, enqueue=False
        )
    )
    assert export.status == DatasetExport.Status.DONE
    path = export_path(export)
    assert pid_of(export, caio).encode() in unzip(path)["participants.csv"]
    # when: Caio withdraws and asks for deletion (the replacement builds once that commits)
    with django_capture_on_commit_callbacks(execute=True):
        participant_withdraw(participant=caio, mode="delete", by="participant")
    # then: the old zip is gone from disk and its download says why, without naming anyone
    client = api_as(owner)
    response = client.get(URL.format(slug=study.slug) + f"{export.pk}/download/")
    assert response.status_code == 410
    assert not path.exists()
    export.refresh_from_db()
    assert export.status == "revoked"
    detail = response.json()["detail"]
    assert "withdrew and asked for their data to be deleted" in detail
    assert caio.code not in detail
    listed = client.get(URL.format(slug=study.slug) + f"{export.pk}/").json()
    assert listed["status"] == "revoked" and "withdrew" in listed["revoked_reason"]
    # and the revocation and the rebuild are audited
    revoke = AuditEvent.objects.get(action="export.revoke", target_id=str(export.pk))
    assert caio.code not in json.dumps(revoke.data)
    replacement = DatasetExport.objects.get(pk=export.replaced_by_id)
    assert AuditEvent.objects.filter(
        action="export.rebuild", target_id=str(replacement.pk)
    ).exists()
    # and the replacement, built with the same options, holds everyone but Caio
    assert replacement.status == DatasetExport.Status.DONE, replacement.error
    assert replacement.options == export.options
    rows = rows_of("participants.csv", unzip(export_path(replacement))["participants.csv"])
    ids = {r["participant_id"] for r in rows}
    assert pid_of(replacement, caio) not in ids and len(ids) == 3
    # and the console tells researchers the same
    from django.test import Client
    from django.urls import reverse

    browser = Client()
    browser.force_login(owner)
    page = browser.get(reverse("console:monitor_exports", kwargs={"slug": study.slug}))
    assert page.status_code == 200
    assert b"withdrew and asked for their data to be deleted" in page.content


def test_an_export_that_does_not_hold_the_participant_stays(small_study, owner, enroll):
    # given: an export built before Eva enrolled
    study, _ = small_study
    export = export_build(
        export=export_create(
            study=study, user=owner, options={"tables": ["participants"]}, enqueue=False
        )
    )
    eva = enroll(study)
    # when: Eva withdraws with deletion
    participant_withdraw(participant=eva, mode="delete", by="participant")
    # then: the export is untouched
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.DONE and export_path(export).exists()
    assert not AuditEvent.objects.filter(action="export.revoke").exists()


def test_a_withdrawal_during_a_build_keeps_the_participant_out_of_the_finished_zip(
    small_study, owner, monkeypatch
):
    # given: a build that has read its participants when Davi withdraws with deletion
    from studyplatform.exports.services import builder

    study, people = small_study
    original = builder.Builder.run

    def run_then_withdraw(self):
        result = original(self)
        participant_withdraw(participant=people["davi"], mode="delete", by="participant")
        return result

    monkeypatch.setattr(builder.Builder, "run", run_then_withdraw)
    export = export_create(study=study, user=owner, options={"tables": ["participants"]})
    # when: the build finishes
    export = export_build(export=export)
    # then: its zip is not kept, and a replacement is queued
    assert export.status == DatasetExport.Status.REVOKED
    assert not export.file_name
    assert export.replaced_by.status == DatasetExport.Status.PENDING
    assert not list(Path(export_path(export)).parent.glob("*.zip"))


# ---------------------------------------------------------------------------------------------
# Download my data


def login(client, participant) -> None:
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def test_the_data_download_is_never_in_clear_under_the_media_root(
    client, recruiting_study, enroll, settings, tmp_path, django_capture_on_commit_callbacks
):
    # given: a participant with a typed name, an e-mail, a panel id and a chat
    from studyplatform.participants.services import JoinContext

    settings.MEDIA_ROOT = tmp_path / "media"
    me = enroll(
        recruiting_study,
        email="clarice.lispector@example.org",
        signature_name="Clarice Lispector",
        name="Clarice Lispector",
        join=JoinContext(panel="prolific", panel_pid="5f0c1d2e3a4b5c6d7e8f9a0b"),
    )
    chat(me, recruiting_study, dt.datetime.now(dt.UTC))
    secrets = [
        b"clarice.lispector@example.org",
        b"Clarice Lispector",
        b"5f0c1d2e3a4b5c6d7e8f9a0b",
        b"work nights",
    ]
    login(client, me)
    # when: the archive is built in the background
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/p/data/")
    download = DataDownload.objects.get(participant=me)
    assert download.status == DataDownload.Status.READY
    # then: no file under MEDIA_ROOT holds any of it, raw or (if it is a zip) decompressed
    files = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert files
    for path in files:
        blobs = [path.read_bytes()]
        if zipfile.is_zipfile(path):
            blobs += list(unzip(path).values())
        for blob in blobs:
            for secret in secrets:
                assert secret not in blob, f"{secret!r} in clear in {path.name}"
    # and the participant still downloads a valid zip with their data
    response = client.get(f"/p/data/{download.pk}/file/")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    data = json.loads(archive.read("data.json"))
    assert data["identity"][0]["email"] == "clarice.lispector@example.org"
    assert data["consent"][0]["signature"] == "Clarice Lispector"
    assert any("work nights" in m["content"] for m in data["messages"])


def test_another_participant_cannot_download_the_archive(
    client, recruiting_study, enroll, settings, tmp_path, django_capture_on_commit_callbacks
):
    # given: Ana's archive
    settings.MEDIA_ROOT = tmp_path / "media"
    ana, bia = enroll(recruiting_study), enroll(recruiting_study)
    login(client, ana)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/p/data/")
    download = DataDownload.objects.get(participant=ana)
    # when: Bia asks for it
    login(client, bia)
    response = client.get(f"/p/data/{download.pk}/file/")
    # then: it does not exist for her
    assert response.status_code == 404
