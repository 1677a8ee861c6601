"""``manage.py import_chatgpt``: the stable output line, exit codes, and nothing saved on error."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command

from studyplatform.chat.models import Conversation, Message
from studyplatform.participants.services import participant_withdraw

pytestmark = pytest.mark.django_db

FIXTURE_JSON = Path(__file__).resolve().parent / "importers" / "fixtures" / "conversations.json"


def export_zip(tmp_path: Path) -> Path:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("conversations.json", FIXTURE_JSON.read_bytes())
        zf.writestr("chat.html", b"<html></html>")
    return path


def run(*args: str) -> tuple[int, str, str]:
    """Run the command as a script would: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_chatgpt", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_it_prints_the_counts_line_and_exits_0(recruiting_study, enroll, tmp_path):
    participant = enroll(recruiting_study)
    status, out, err = run("--participant", participant.code, str(export_zip(tmp_path)))
    assert (status, out, err) == (0, "imported=5 messages=16 skipped=0\n", "")
    assert Conversation.objects.filter(participant=participant).count() == 5


def test_a_second_run_reports_every_conversation_as_skipped(recruiting_study, enroll):
    participant = enroll(recruiting_study)
    run("--participant", participant.code, str(FIXTURE_JSON))
    messages = Message.objects.count()
    status, out, _ = run("--participant", participant.code, str(FIXTURE_JSON))
    assert (status, out) == (0, "imported=0 messages=0 skipped=5\n")
    assert Conversation.objects.count() == 5 and Message.objects.count() == messages


def test_a_dry_run_needs_no_participant_and_writes_nothing(recruiting_study, enroll, tmp_path):
    status, out, err = run("--dry-run", str(export_zip(tmp_path)))
    assert (status, out, err) == (0, "imported=5 messages=16 skipped=0\n", "")
    assert Conversation.objects.count() == 0 and Message.objects.count() == 0


def test_a_dry_run_for_a_participant_counts_what_is_already_there(recruiting_study, enroll):
    participant = enroll(recruiting_study)
    run("--participant", participant.code, str(FIXTURE_JSON))
    status, out, _ = run("--dry-run", "--participant", participant.code, str(FIXTURE_JSON))
    assert (status, out) == (0, "imported=0 messages=0 skipped=5\n")


def test_an_unknown_participant_code_exits_1(recruiting_study):
    status, out, err = run("--participant", "P-NOSUCH22", str(FIXTURE_JSON))
    assert (status, out, err) == (1, "", "unknown participant code 'P-NOSUCH22'\n")
    assert Conversation.objects.count() == 0


def test_without_a_participant_a_real_run_exits_1():
    status, out, err = run(str(FIXTURE_JSON))
    assert (status, out) == (1, "")
    assert err == "--participant CODE is required unless --dry-run is given\n"


def test_without_consent_to_import_it_exits_1(recruiting_study, enroll):
    choices = {"agree": True, "adult": True, "share_chats": True, "import_history": False}
    participant = enroll(recruiting_study, choices=choices)
    status, out, err = run("--participant", participant.code, str(FIXTURE_JSON))
    assert (status, out) == (1, "")
    assert err == "the participant's consent does not include importing chat history\n"
    assert Conversation.objects.count() == 0


def test_a_withdrawn_participant_exits_1(recruiting_study, enroll):
    participant = enroll(recruiting_study)
    participant_withdraw(participant=participant, mode="keep", by="researcher")
    status, _, err = run("--participant", participant.code, str(FIXTURE_JSON))
    assert (status, err) == (1, "the participant has withdrawn from the study\n")
    assert Conversation.objects.count() == 0


def test_a_malformed_file_exits_1_with_the_reason_and_saves_nothing(
    recruiting_study, enroll, tmp_path
):
    participant = enroll(recruiting_study)
    bad = tmp_path / "conversations.json"
    bad.write_bytes(b'[{"id": "a", "mapping": []}]')
    status, out, err = run("--participant", participant.code, str(bad))
    assert (status, out) == (1, "")
    assert err == "conversation 1 ('a'): mapping is a list, not an object\n"
    assert Conversation.objects.count() == 0 and Message.objects.count() == 0


def test_a_missing_file_exits_1(recruiting_study, enroll, tmp_path):
    participant = enroll(recruiting_study)
    status, _, err = run("--participant", participant.code, str(tmp_path / "nope.zip"))
    assert (status, err) == (1, "the file could not be read (No such file or directory)\n")
