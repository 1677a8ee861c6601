"""Interim and final looks: chosen when a run starts, validated, counted, audited, reported."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from analysis.models import AnalysisRun
from analysis.services import (
    LookNotAllowed,
    analysis_look_default,
    analysis_run_create,
    analysis_run_execute,
)
from studyplatform.core.models import AuditEvent
from studyplatform.studies.services import study_transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed_study(recruiting_study, owner):
    return study_transition(study=recruiting_study, to="closed", actor=owner)


def test_a_run_is_interim_while_the_study_collects_and_final_once_closed(
    study, recruiting_study, owner
):
    assert analysis_look_default(study) == "interim"
    run = analysis_run_create(study=recruiting_study, created_by=owner, enqueue=False)
    assert run.look == "interim"
    closed = study_transition(study=recruiting_study, to="closed", actor=owner)
    assert analysis_look_default(closed) == "final"
    assert analysis_run_create(study=closed, created_by=owner, enqueue=False).look == "final"


def test_a_final_look_on_a_study_that_still_collects_is_refused_and_nothing_is_written(
    recruiting_study, owner
):
    with pytest.raises(LookNotAllowed) as info:
        analysis_run_create(study=recruiting_study, created_by=owner, look="final", enqueue=False)
    assert str(info.value) == (
        "a final analysis needs a closed study; this study is recruiting: "
        "run an interim look, or close the study first"
    )
    assert not AnalysisRun.objects.exists()
    assert not AuditEvent.objects.filter(action="analysis.final_run").exists()


def test_a_final_run_is_audited_with_the_number_of_earlier_looks(closed_study, owner):
    # given: one completed interim look of the closed study
    first = analysis_run_create(study=closed_study, look="interim", enqueue=False)
    analysis_run_execute(run=first)
    # when
    final = analysis_run_create(study=closed_study, created_by=owner, enqueue=False)
    # then
    event = AuditEvent.objects.get(action="analysis.final_run")
    assert event.actor == owner
    assert event.target_id == str(final.pk)
    assert event.study_slug == closed_study.slug
    assert event.data == {"previous_looks": 1}


def test_results_count_the_completed_looks_before_a_run_and_the_report_says_so(
    recruiting_study, owner
):
    # given: two completed interim runs and one that failed (a failed run analysed nothing)
    for _ in range(2):
        done = analysis_run_execute(run=analysis_run_create(study=recruiting_study, enqueue=False))
        assert done.status == "done", done.error
    failed = analysis_run_create(study=recruiting_study, enqueue=False)
    AnalysisRun.objects.filter(pk=failed.pk).update(status="failed")
    # when
    run = analysis_run_execute(run=analysis_run_create(study=recruiting_study, enqueue=False))
    # then
    assert run.results["look"] == {
        "kind": "interim",
        "number": 3,
        "previous_looks": 2,
        "previous_interim": 2,
        "previous_final": 0,
        "study_status": "recruiting",
    }
    assert '<p data-look="interim" data-previous-looks="2">' in run.report_html
    assert "Interim look (look 3): 2 earlier completed analysis runs" in run.report_html


def test_the_api_takes_the_look_and_answers_400_naming_the_field(
    recruiting_study, member_of, api_as, django_capture_on_commit_callbacks
):
    analyst = api_as(member_of(recruiting_study, "analyst"))
    base = f"/api/studies/{recruiting_study.slug}/analysis-runs/"
    # a kind that does not exist
    bad = analyst.post(base, {"look": "sneak-peek"}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {"look": ['"sneak-peek" is not a valid choice.']}
    # a final look while recruiting
    early = analyst.post(base, {"look": "final"}, format="json")
    assert early.status_code == 400
    assert early.json() == {
        "look": [
            "a final analysis needs a closed study; this study is recruiting: "
            "run an interim look, or close the study first"
        ]
    }
    assert not AnalysisRun.objects.exists()
    # an interim look is accepted and shown on the row
    with django_capture_on_commit_callbacks(execute=False):
        created = analyst.post(base, {"look": "interim"}, format="json")
    assert created.status_code == 201
    assert created.json()["look"] == "interim"


def test_the_api_starts_a_final_look_on_a_closed_study(
    closed_study, member_of, api_as, django_capture_on_commit_callbacks
):
    analyst = api_as(member_of(closed_study, "analyst"))
    with django_capture_on_commit_callbacks(execute=False):
        created = analyst.post(
            f"/api/studies/{closed_study.slug}/analysis-runs/", {"look": "final"}, format="json"
        )
    assert created.status_code == 201
    assert created.json()["look"] == "final"
    assert AuditEvent.objects.filter(action="analysis.final_run").count() == 1


def test_a_monitor_still_may_not_start_a_look(recruiting_study, member_of, api_as):
    monitor = api_as(member_of(recruiting_study, "monitor"))
    response = monitor.post(
        f"/api/studies/{recruiting_study.slug}/analysis-runs/", {"look": "interim"}, format="json"
    )
    assert response.status_code == 403
    assert not AnalysisRun.objects.exists()


def test_the_console_refuses_a_final_look_while_recruiting_with_a_message(
    recruiting_study, owner, client
):
    client.force_login(owner)
    page = client.post(
        f"/console/{recruiting_study.slug}/analyses/", {"look": "final"}, follow=True
    ).content.decode()
    assert "The run was not started: a final analysis needs a closed study" in page
    assert not AnalysisRun.objects.exists()


def test_the_console_starts_an_interim_look_and_lists_its_kind(
    recruiting_study, owner, client, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(f"/console/{recruiting_study.slug}/analyses/", {"look": "interim"})
    run = AnalysisRun.objects.get(study=recruiting_study)
    assert run.look == "interim"
    html = client.get(f"/console/{recruiting_study.slug}/analyses/").content.decode()
    assert "<td>Interim</td>" in html


def test_the_cli_refuses_a_final_look_on_an_open_study(recruiting_study):
    with pytest.raises(CommandError) as info:
        call_command("analyze", recruiting_study.slug, "--look", "final")
    assert str(info.value).startswith("--look: a final analysis needs a closed study")
    assert not AnalysisRun.objects.exists()
