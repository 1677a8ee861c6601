"""examples/api_client.py, the README's client example, run against a live server: it creates a
study from the example YAML, watches enrollment and downloads the export it asked for."""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from studyplatform.core.models import AuditEvent
from studyplatform.studies.models import Study
from tests.factories import launch_study

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_YAML = ROOT / "examples" / "companion-rct.yaml"


def _load_example():
    spec = importlib.util.spec_from_file_location("api_client", ROOT / "examples" / "api_client.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve the module's annotations through sys.modules.
    sys.modules["api_client"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def api_client_module():
    return _load_example()


@pytest.fixture
def token(owner) -> str:
    return Token.objects.create(user=owner).key


def test_it_creates_a_study_watches_enrollment_and_downloads_an_export(
    live_server, transactional_db, owner, token, enroll, api_client_module, tmp_path
):
    with api_client_module.StudyPlatform(live_server.url, token, timeout=30) as api:
        # when: the researcher creates the study from the example YAML
        created = api.create_study(EXAMPLE_YAML.read_text(encoding="utf-8"), change_note="v1")
        # then: it exists as a draft they own
        study = Study.objects.get(slug=created["slug"])
        assert (created["status"], created["current_version"]) == ("draft", 1)

        # given: the study launched (in the console) and two people joined
        study = launch_study(study, owner)
        enroll(study)
        enroll(study)
        seen = []
        enrollment = api.watch_enrollment(
            study.slug, target=2, seconds=5, interval=0.1, on_change=seen.append
        )
        assert enrollment.by_status == {"active": 2}
        assert seen == [enrollment]

        # when: an export is requested, waited for and downloaded
        export = api.create_export(study.slug, format="csv")
        done = api.wait_for_export(study.slug, export["id"], seconds=60, interval=0.2)
        path = api.download_export(study.slug, export["id"], tmp_path)

    # then: the zip is the export the server built, and the download was audited
    assert path.stat().st_size == done["size"]
    with zipfile.ZipFile(path) as archive:
        assert any(name.endswith("participants.csv") for name in archive.namelist())
    assert AuditEvent.objects.filter(action="export.download").count() == 1


def test_the_script_reports_an_api_refusal_and_exits_non_zero(
    live_server, transactional_db, token, api_client_module, tmp_path, capsys
):
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: studyplatform/v1\nstudy: {}\n", encoding="utf-8")
    code = api_client_module.main(
        ["--url", live_server.url, "--token", token, "--protocol", str(bad), "--out", str(tmp_path)]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert ": 400 " in err and "The protocol is not valid." in err
    assert not Study.objects.exists()


def test_the_script_runs_end_to_end_on_an_existing_study(
    live_server, transactional_db, study, owner, token, enroll, api_client_module, tmp_path, capsys
):
    study = launch_study(study, owner)
    enroll(study)
    code = api_client_module.main(
        [
            "--url", live_server.url,
            "--token", token,
            "--slug", study.slug,
            "--watch-seconds", "0",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 enrolled; export" in out
    assert len(list(tmp_path.glob(f"{study.slug}-export-*.zip"))) == 1
