"""Analysis runs end to end: simulate, execute, store, report; the task, the API and the CLI."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command

from analysis.models import AnalysisRun
from analysis.report import FIGURES
from analysis.services import analysis_run_create, analysis_run_execute
from analysis.tasks import analysis_run_task

pytestmark = pytest.mark.django_db


def test_a_run_on_a_simulated_study_stores_results_provenance_and_a_report(simulated_study):
    # given
    run = analysis_run_create(study=simulated_study, enqueue=False)
    steps = []
    # when
    run = analysis_run_execute(run=run, progress=lambda step, value: steps.append(step))
    # then: done, with provenance
    assert run.status == "done", run.error
    assert run.progress == 100
    assert steps == ["loading", "features", "linking", "models", "report", "done"]
    assert re.fullmatch(r"[0-9a-f]{64}", run.data_hash)
    assert run.protocol_version == simulated_study.current_version
    assert run.code_version
    # and the models were fitted on ~60 participants
    who5 = run.results["outcomes"]["who5.percentage"]
    # (rows whose window has no messages have no night share and drop out of the model)
    assert who5["usage_model"]["n_groups"] >= 40
    assert "messages_sent_within" in who5["usage_model"]["fixed"]
    assert "wave:C(arm)[T.legacy]" in who5["arm_time_model"]["fixed"]
    assert run.results["primary"]["term"] == "messages_sent_within"
    # and the report has every figure (with alt text) and the tables
    html = run.report_html
    for name in FIGURES:
        assert f'<figure data-figure="{name}"><img alt="' in html
    assert 'data-table="usage_model:who5.percentage"' in html
    assert 'data-table="primary"' in html
    # and its p-values are Satterthwaite t tests, named as such
    assert who5["usage_model"]["fixed"]["messages_sent_within"]["df"] > 0
    assert "<th>p (Satterthwaite t)</th><th>q (Holm)</th>" in html
    assert "data:image/png;base64," in html
    assert run.data_hash in html


def test_re_running_on_the_same_data_gives_the_same_data_hash(simulated_study):
    first = analysis_run_execute(run=analysis_run_create(study=simulated_study, enqueue=False))
    second = analysis_run_execute(run=analysis_run_create(study=simulated_study, enqueue=False))
    assert first.data_hash == second.data_hash


def test_the_task_is_safe_to_run_twice(study):
    # given: an empty study (nothing to fit is a result, not a crash)
    run = analysis_run_create(study=study, enqueue=False)
    # when
    analysis_run_task(run.id)
    run.refresh_from_db()
    finished = run.finished_at
    analysis_run_task(run.id)
    # then: the second delivery did nothing
    run.refresh_from_db()
    assert run.status == "done", run.error
    assert run.finished_at == finished
    model = run.results["outcomes"]["who5.percentage"]["usage_model"]
    assert model["error"] == "no column 'who5.percentage'"
    # and a missing run is a no-op
    analysis_run_task(999_999)


def test_an_analyst_starts_a_run_and_reads_status_and_report(
    study, member_of, api_as, django_capture_on_commit_callbacks
):
    analyst = api_as(member_of(study, "analyst"))
    base = f"/api/studies/{study.slug}/analysis-runs/"
    # when: POST enqueues the task after commit (eager in tests)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        created = analyst.post(base, {}, format="json")
    # then
    assert created.status_code == 201
    assert len(callbacks) == 1
    run_id = created.json()["id"]
    detail = analyst.get(f"{base}{run_id}/").json()
    assert detail["status"] == "done" and detail["progress"] == 100
    assert [r["id"] for r in analyst.get(base).json()] == [run_id]
    report = analyst.get(f"{base}{run_id}/report/")
    assert report.status_code == 200
    assert report["Content-Type"].startswith("text/html")
    assert b'data-figure="trajectories"' in report.content


def test_the_owner_may_start_a_run(study, owner, api_as, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = api_as(owner).post(f"/api/studies/{study.slug}/analysis-runs/", {})
    assert response.status_code == 201
    assert response.json()["status"] == "pending"


def test_a_monitor_may_not_start_or_read_runs(study, member_of, api_as):
    monitor = api_as(member_of(study, "monitor"))
    response = monitor.post(f"/api/studies/{study.slug}/analysis-runs/", {})
    assert response.status_code == 403
    assert response.json()["detail"] == "Your role in this study does not allow: run_analysis."
    assert monitor.get(f"/api/studies/{study.slug}/analysis-runs/").status_code == 403
    assert not AnalysisRun.objects.exists()


def test_a_member_of_another_study_gets_404(study, rct_doc, make_user, member_of, api_as):
    from studyplatform.studies.services import study_create_from_protocol

    other_doc = {**rct_doc, "study": {**rct_doc["study"], "slug": "other-study"}}
    other = study_create_from_protocol(doc=other_doc, author=make_user("otto"))
    outsider = api_as(member_of(other, "analyst"))
    run = analysis_run_create(study=study, enqueue=False)
    base = f"/api/studies/{study.slug}/analysis-runs/"
    assert outsider.post(base, {}).status_code == 404
    assert outsider.get(f"{base}{run.id}/").status_code == 404
    assert outsider.get(f"{base}{run.id}/report/").status_code == 404
    assert AnalysisRun.objects.count() == 1


def test_the_report_of_an_unfinished_run_is_not_served(study, owner, api_as):
    run = analysis_run_create(study=study, enqueue=False)
    response = api_as(owner).get(f"/api/studies/{study.slug}/analysis-runs/{run.id}/report/")
    assert response.status_code == 409
    assert response.json()["detail"] == "The report is not ready (run is pending)."


def test_the_cli_runs_the_analysis_and_writes_the_report(simulated_study, tmp_path):
    out = StringIO()
    target = tmp_path / "report.html"
    call_command("analyze", simulated_study.slug, out=str(target), stdout=out, stderr=StringIO())
    assert f"Report written to {target}" in out.getvalue()
    text = target.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert 'data-figure="within_slopes"' in text
    assert AnalysisRun.objects.get().status == "done"


# Written by hand, not read from studies/roles.py: only the owner and analysts run analyses or
# read their results (the results show arm effects, so blinded roles never see them).
RUNS_ALLOWED = {
    "owner": True,
    "designer": False,
    "monitor": False,
    "analyst": True,
    "safety_reviewer": False,
}


@pytest.mark.parametrize("role", sorted(RUNS_ALLOWED))
def test_each_role_gets_exactly_its_answers_on_the_analysis_api(
    role, study, member_of, api_as, django_capture_on_commit_callbacks
):
    # given: a finished run, and a member holding `role`
    done = analysis_run_execute(run=analysis_run_create(study=study, enqueue=False))
    client = api_as(member_of(study, role))
    base = f"/api/studies/{study.slug}/analysis-runs/"
    allowed = RUNS_ALLOWED[role]
    # when
    with django_capture_on_commit_callbacks(execute=False):
        answers = {
            "list": client.get(base).status_code,
            "detail": client.get(f"{base}{done.id}/").status_code,
            "report": client.get(f"{base}{done.id}/report/").status_code,
            "start": client.post(base, {}, format="json").status_code,
        }
    # then: exact statuses, and a refused start created nothing
    if allowed:
        assert answers == {"list": 200, "detail": 200, "report": 200, "start": 201}
    else:
        assert answers == dict.fromkeys(answers, 403)
    assert AnalysisRun.objects.count() == (2 if allowed else 1)
