"""The participant's "download my data" archive: encrypted on disk, expiring, deleted at
withdrawal with deletion. (That it never sits in clear is in tests/security.)"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.utils import timezone

from studyplatform.participants.models import DataDownload
from studyplatform.participants.services import (
    data_download_build,
    data_download_request,
    data_downloads_expire_due,
    participant_withdraw,
)
from studyplatform.participants.services.data_download import data_download_open, download_path
from studyplatform.participants.session import SESSION_KEY
from surveys.engine import _entries, schedule_tick
from surveys.models import Invitation
from surveys.services import response_save

pytestmark = pytest.mark.django_db


def login(client, participant):
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


@pytest.fixture
def ready(recruiting_study, enroll, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.DATA_DOWNLOAD_EXPIRY_HOURS = 72
    participant = enroll(recruiting_study)
    download = data_download_build(download=data_download_request(participant=participant))
    assert download.status == DataDownload.Status.READY
    return participant, download


def test_an_archive_expires_and_the_sweep_deletes_its_file(client, ready):
    # given: a ready archive, built just now, that expires in 72 hours
    participant, download = ready
    assert timezone.now() + dt.timedelta(hours=71) < download.expires_at
    assert download.expires_at < timezone.now() + dt.timedelta(hours=73)
    path = download_path(download)
    login(client, participant)
    assert client.get(f"/p/data/{download.pk}/file/").status_code == 200
    # when: its expiry passes: refused at once, before the sweep ran
    DataDownload.objects.filter(pk=download.pk).update(
        expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    assert client.get(f"/p/data/{download.pk}/file/").status_code == 404
    page = client.get("/p/data/").content.decode()
    assert "Expired and deleted" in page and f"/p/data/{download.pk}/file/" not in page
    # then: the sweep deletes the file and marks the row expired, once
    assert data_downloads_expire_due() == 1
    download.refresh_from_db()
    assert download.status == DataDownload.Status.EXPIRED and not path.exists()
    assert data_downloads_expire_due() == 0


def test_withdrawal_with_deletion_deletes_the_encrypted_archive(ready):
    participant, download = ready
    path = download_path(download)
    assert path.exists() and path.name.endswith(".fernet")
    participant_withdraw(participant=participant, mode="delete", by="participant")
    assert not path.exists()
    assert not DataDownload.objects.filter(pk=download.pk).exists()
    assert not [p for p in Path(path.parent).iterdir() if p.is_file()]


def test_a_damaged_archive_is_a_404_not_a_500(client, ready):
    participant, download = ready
    download_path(download).write_bytes(b"not a fernet token\n")
    login(client, participant)
    assert client.get(f"/p/data/{download.pk}/file/").status_code == 404


def _unzip(download) -> zipfile.ZipFile:
    clear = b"".join(data_download_open(download=download))
    return zipfile.ZipFile(io.BytesIO(clear))


def test_the_archive_gives_nested_values_as_json_and_a_readme_in_the_participants_language(
    recruiting_study, enroll, settings, tmp_path, django_capture_on_commit_callbacks
):
    # given: a Brazilian participant who answered WHO-5 in the baseline questionnaire
    settings.MEDIA_ROOT = tmp_path / "media"
    _entries.cache_clear()  # schedules are cached by version id, which SQLite reuses
    participant = enroll(recruiting_study, language="pt-br")
    with django_capture_on_commit_callbacks(execute=True):
        schedule_tick(now=timezone.now())
    invitation = Invitation.objects.get(participant=participant, entry_key="baseline")
    answers = {f"who5_{i}": 3 for i in range(1, 6)}
    response_save(invitation=invitation, instrument_key="who5", answers=answers, submit=True)

    # when: their data download is built
    download = data_download_build(download=data_download_request(participant=participant))
    archive = _unzip(download)

    # then: survey answers and scores are JSON in the CSV (not Python dict reprs) ...
    rows = list(csv.DictReader(io.StringIO(archive.read("survey_responses.csv").decode())))
    (row,) = [r for r in rows if r["instrument"] == "who5"]
    assert json.loads(row["answers"]) == answers
    assert isinstance(json.loads(row["scores"]), dict) and "'" not in row["scores"]
    # ... consent choices too, and in data.json they are objects, not JSON-in-a-string
    consent_row = next(csv.DictReader(io.StringIO(archive.read("consent.csv").decode())))
    assert json.loads(consent_row["choices"])["agree"] is True
    data = json.loads(archive.read("data.json"))
    assert data["consent"][0]["choices"]["agree"] is True
    assert isinstance(data["participant"][0]["screener_answers"], dict)
    # ... every table comes as both CSV and JSON, the JSON equal to data.json's table
    names = set(archive.namelist())
    for table in data:
        assert {f"{table}.csv", f"{table}.json"} <= names
        assert json.loads(archive.read(f"{table}.json")) == data[table]
    # ... and the README is in Portuguese
    readme = archive.read("README.txt").decode()
    assert f"Código de participante: {participant.code}" in readme
    assert "Cada tabela aparece duas vezes" in readme
    assert "Participant code" not in readme


def test_the_readme_is_in_english_for_an_english_participant(ready):
    participant, download = ready
    readme = _unzip(download).read("README.txt").decode()
    assert f"Participant code: {participant.code}" in readme
    assert "survey_responses.csv, survey_responses.json" in readme
