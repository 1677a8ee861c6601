"""A classifier rate as an OUTCOME of a real analysis run picked on the console's Analyses tab:
the run's plan, the arm contrast on the rate, the report's classifier note, the refusals."""

from __future__ import annotations

import pytest

from analysis.models import AnalysisRun
from analysis.services import analysis_run_execute
from studyplatform.studies.services import membership_add
from tests.analysis.test_classifier_predictor import (  # noqa: F401 (the fixture)
    classified_simulation,
    start_from_console,
)

pytestmark = pytest.mark.django_db

RATE = "cls_loneliness_rate"


def test_a_classifier_rate_picked_as_an_outcome_gets_the_follow_up_arm_contrast(
    classified_simulation,  # noqa: F811
    owner,
    client,
):
    study = classified_simulation
    client.force_login(owner)
    page = client.get(f"/console/{study.slug}/analyses/").content.decode()
    assert '<select id="cls-outcome" name="classifier_outcome">' in page
    # when: the researcher adds the rate as an outcome of one run
    run = start_from_console(client, study, include_pilot="on", classifier_outcome=RATE)
    plan = study.protocol["analysis"]
    assert run.params["plan"]["outcomes"] == [*plan["outcomes"], RATE]
    # the primary family stays the plan's own outcomes: the added rate is exploratory
    assert run.params["plan"]["multiplicity"]["outcomes"] == plan["outcomes"]
    run = analysis_run_execute(run=run)
    # then: the rate's arm contrast is the follow-up arm × wave model, fitted
    assert run.status == "done", run.error
    contrast = run.results["arm_contrast"][RATE]
    assert contrast["method"] == "arm_by_wave_followup", contrast.get("error")
    assert "error" not in contrast, contrast["error"]
    assert contrast["end_of_study"] and min(contrast["waves"]) > 0
    assert all(r["outcome"] != RATE for r in run.results["multiplicity"]["family"])
    # the survey outcomes keep their own models
    assert "fixed" in run.results["outcomes"]["who5.percentage"]["lagged_model"]
    # and the report says the outcome is classifier-derived, with the validation note
    note = run.results["classifiers"][RATE]
    assert note["classifier"] == "loneliness@1" and note["validation"] is None
    assert f'data-classifier-outcome="{RATE}"' in run.report_html
    assert "Classifier-derived outcome" in run.report_html


def test_an_unknown_rate_outcome_is_refused_with_the_field_named(
    classified_simulation,  # noqa: F811
    owner,
    client,
):
    study = classified_simulation
    client.force_login(owner)
    response = client.post(
        f"/console/{study.slug}/analyses/",
        {"look": "interim", "classifier_outcome": "cls_nope_rate"},
        follow=True,
    )
    assert "classifier_outcome: must be one of cls_loneliness_rate" in response.content.decode()
    assert not AnalysisRun.objects.filter(study=study).exists()


def test_a_member_who_cannot_run_analyses_cannot_add_a_rate_outcome(
    classified_simulation,  # noqa: F811
    owner,
    make_user,
    client,
):
    study = classified_simulation
    monitor = make_user("mona")
    membership_add(study=study, user=monitor, role="monitor", actor=owner)
    client.force_login(monitor)
    response = client.post(
        f"/console/{study.slug}/analyses/", {"look": "interim", "classifier_outcome": RATE}
    )
    assert response.status_code in (403, 404)
    assert not AnalysisRun.objects.filter(study=study).exists()
