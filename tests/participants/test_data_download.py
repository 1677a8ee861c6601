"""The participant's "download my data" archive: encrypted on disk, expiring, deleted at
withdrawal with deletion. (That it never sits in clear is in tests/security.)"""

from __future__ import annotations

import datetime as dt
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
from studyplatform.participants.services.data_download import download_path
from studyplatform.participants.session import SESSION_KEY

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
