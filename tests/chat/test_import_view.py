"""The participant's import page: the form, a successful upload, a malformed file, consent,
session scoping, and imported history in "download my data"."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from studyplatform.chat.models import Conversation, Message
from studyplatform.participants.models import DataDownload
from studyplatform.participants.session import SESSION_KEY

pytestmark = pytest.mark.django_db

URL = "/p/chat/import/"
FIXTURE_JSON = Path(__file__).resolve().parent / "importers" / "fixtures" / "conversations.json"
NO_IMPORT = {"agree": True, "adult": True, "share_chats": True, "import_history": False}


def login(client, participant):
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def export_upload(name: str = "chatgpt-export.zip") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("conversations.json", FIXTURE_JSON.read_bytes())
        zf.writestr("chat.html", b"<html></html>")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def test_the_page_shows_an_upload_form_and_what_is_imported(client, recruiting_study, enroll):
    login(client, enroll(recruiting_study))
    page = client.get(URL)
    html = page.content.decode()
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in html and 'type="file"' in html
    assert 'accept=".zip,.json' in html and "csrfmiddlewaretoken" in html
    assert '<label for="id_export">' in html
    assert "What is imported" in html and "withdrawing from the study" in html


def test_uploading_an_export_imports_it_and_shows_the_counts(client, recruiting_study, enroll):
    participant = enroll(recruiting_study)
    login(client, participant)
    response = client.post(URL, {"export": export_upload()})
    html = response.content.decode()
    assert response.status_code == 200
    assert "5 conversations were imported." in html and "They hold 16 messages." in html
    assert 'href="/p/chat/"' in html
    assert Conversation.objects.filter(participant=participant, imported=True).count() == 5


def test_uploading_it_again_says_the_conversations_were_skipped(client, recruiting_study, enroll):
    login(client, enroll(recruiting_study))
    client.post(URL, {"export": export_upload()})
    again = client.post(URL, {"export": export_upload()})
    html = again.content.decode()
    assert "0 conversations were imported." in html
    assert "5 conversations had been imported before" in html
    assert Conversation.objects.count() == 5


def test_a_malformed_file_is_refused_with_its_reason_and_nothing_is_saved(
    client, recruiting_study, enroll
):
    login(client, enroll(recruiting_study))
    bad = SimpleUploadedFile("conversations.json", b'{"not": "a list"}')
    response = client.post(URL, {"export": bad})
    assert response.status_code == 400
    assert (
        "conversations.json should hold a list of conversations, not an object"
        in response.content.decode()
    )
    assert Conversation.objects.count() == 0 and Message.objects.count() == 0


def test_a_file_over_the_upload_limit_is_refused(client, recruiting_study, enroll, settings):
    settings.CHAT_IMPORT_MAX_BYTES = 100
    login(client, enroll(recruiting_study))
    response = client.post(URL, {"export": export_upload()})
    assert response.status_code == 413
    assert "The file is larger than the 100\xa0bytes upload limit." in response.content.decode()
    assert Conversation.objects.count() == 0


def test_posting_without_a_file_shows_the_form_again(client, recruiting_study, enroll):
    login(client, enroll(recruiting_study))
    response = client.post(URL, {})
    assert response.status_code == 400 and "This field is required." in response.content.decode()


def test_without_consent_to_import_the_page_says_so_and_offers_no_form(
    client, recruiting_study, enroll
):
    login(client, enroll(recruiting_study, choices=NO_IMPORT))
    page = client.get(URL)
    html = page.content.decode()
    assert page.status_code == 200
    assert "you did not agree to importing your chat history" in html
    assert 'type="file"' not in html
    posted = client.post(URL, {"export": export_upload()})
    assert posted.status_code == 403 and Conversation.objects.count() == 0


def test_the_page_needs_a_participant_session(client, recruiting_study):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"] == f"/p/signin/?next={URL}"


def test_another_participant_sees_nothing_of_the_first_ones_import(
    client, recruiting_study, enroll
):
    # given: the first participant imported their history
    first, second = enroll(recruiting_study), enroll(recruiting_study)
    login(client, first)
    client.post(URL, {"export": export_upload()})
    imported = Conversation.objects.filter(participant=first).first()
    # when: the second participant signs in and looks
    login(client, second)
    page = client.get(URL).content.decode()
    # then: their pages show none of it, and the first one's conversation is not theirs to open
    assert "Capital cities" not in page and "were imported" not in page
    assert "Capital cities" not in client.get("/p/chat/").content.decode()
    assert client.get(f"/p/chat/c/{imported.pk}/").status_code == 404
    assert not Conversation.objects.filter(participant=second).exists()


def test_the_data_download_includes_imported_messages(
    client, recruiting_study, enroll, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    me, other = enroll(recruiting_study), enroll(recruiting_study)
    login(client, other)
    client.post(URL, {"export": export_upload()})
    login(client, me)
    client.post(URL, {"export": export_upload()})
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/p/data/")  # the task runs eagerly once the request commits
    download = DataDownload.objects.get(participant=me)
    response = client.get(f"/p/data/{download.pk}/file/")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    data = json.loads(archive.read("data.json"))
    assert len(data["conversations"]) == 5 and all(c["imported"] for c in data["conversations"])
    rows = {row["content"]: row for row in data["messages"]}
    answer = rows["Canberra is the capital."]
    question = rows["What is the capital of Australia, exactly?"]
    assert answer["parent_id"] == question["message_id"] and answer["role"] == "assistant"
    assert answer["imported"] is True and answer["model_reported"] == "gpt-4"
    assert answer["status"] == "complete" and answer["created_at"] == "2023-11-16T02:00:07+00:00"
    own = set(Message.objects.filter(participant=me).values_list("pk", flat=True))
    assert {row["message_id"] for row in data["messages"]} == own
    assert {"conversations.csv", "messages.csv"} <= set(archive.namelist())
