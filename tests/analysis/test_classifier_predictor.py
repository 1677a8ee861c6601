"""A classifier rate as a predictor in a real analysis run: simulated participants who consented
to classification, a classification run with the simulated judge, the analysis with
cls_loneliness_rate added from the console, and the report's validation note."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from analysis.models import AnalysisRun
from analysis.services import analysis_run_execute
from studyplatform.classifiers.coding import coding_sample_create, human_label_record
from studyplatform.classifiers.models import ClassifierLabel
from studyplatform.classifiers.services import classification_run_create
from studyplatform.classifiers.tasks import classification_run_task
from studyplatform.studies.services import study_create_from_protocol
from tests.classifiers.conftest import classifier_doc

pytestmark = pytest.mark.django_db


@pytest.fixture
def classified_simulation(owner, rct_doc):
    # given: the example RCT running loneliness@1 with the simulated judge; 40 simulated
    # participants (who tick every consent box, classify_chats included) over 6 weeks
    doc = classifier_doc(rct_doc, endpoint="simulated", run=["loneliness@1"])
    doc["classifiers"]["judge"] = {"endpoint": "simulated", "model": "simulated-judge"}
    study = study_create_from_protocol(doc=doc, author=owner)
    call_command("simulate_study", study.slug, participants=40, days=42, effect=0.5, seed=3)
    run = classification_run_create(
        study=study, created_by=owner, data={"max_judge_calls": 100_000}, enqueue=False
    )
    classification_run_task(run.pk)
    assert ClassifierLabel.objects.filter(study=study, outcome="label").count() > 100
    return study


def start_from_console(client, study, **form) -> AnalysisRun:
    response = client.post(f"/console/{study.slug}/analyses/", {"look": "interim", **form})
    assert response.status_code == 302
    return AnalysisRun.objects.filter(study=study).latest("pk")


def test_a_classifier_rate_picked_on_the_analyses_page_is_fitted_and_reported(
    classified_simulation, owner, client
):
    study = classified_simulation
    client.force_login(owner)
    page = client.get(f"/console/{study.slug}/analyses/").content.decode()
    assert '<option value="cls_loneliness_rate">' in page
    # when: the researcher adds the rate to a run
    run = start_from_console(
        client, study, include_pilot="on", classifier_predictor="cls_loneliness_rate"
    )
    assert run.params["plan"]["predictors"] == [
        "messages_sent",
        "night_share",
        "cls_loneliness_rate",
    ]
    run = analysis_run_execute(run=run)
    # then: the rate is a term of the models, after the plan's own primary predictor
    assert run.status == "done", run.error
    who5 = run.results["outcomes"]["who5.percentage"]
    assert "cls_loneliness_rate_lag_within" in who5["lagged_model"]["fixed"]
    assert run.results["primary"]["term"] == "messages_sent_lag_within"
    # and the report names the classifier and says it has no validation yet
    note = run.results["classifiers"]["cls_loneliness_rate"]
    assert note["classifier"] == "loneliness@1" and note["validation"] is None
    assert "cls_loneliness_rate_lag_within" in run.report_html
    assert "No validation against human coders exists for this classifier." in run.report_html


def test_the_report_carries_the_validation_figures_once_people_coded_a_sample(
    classified_simulation, owner
):
    from analysis.services import analysis_run_create

    study = classified_simulation
    sample = coding_sample_create(
        study=study, created_by=owner, data={"classifier": "loneliness", "size": 20, "seed": 1}
    )
    for item in sample.items.all():
        human_label_record(item=item, coder=owner, label=item.classifier_label.label)
    run = analysis_run_create(
        study=study,
        params={"plan": {"predictors": ["messages_sent", "cls_loneliness_rate"]}},
        enqueue=False,
    )
    run = analysis_run_execute(run=run)
    assert run.status == "done", run.error
    note = run.results["classifiers"]["cls_loneliness_rate"]
    assert note["validation"]["classifier_vs_coder"][0]["n"] == 20
    assert f"vs {owner.username} (n=20): kappa 1.00" in run.report_html


def test_an_unknown_classifier_rate_is_refused_with_the_field_named(
    classified_simulation, owner, client
):
    study = classified_simulation
    client.force_login(owner)
    response = client.post(
        f"/console/{study.slug}/analyses/",
        {"look": "interim", "classifier_predictor": "cls_nope_rate"},
        follow=True,
    )
    assert "classifier_predictor: must be one of cls_loneliness_rate" in response.content.decode()
    assert not AnalysisRun.objects.filter(study=study).exists()
