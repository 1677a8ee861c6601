"""The classifier journey in Chromium: on a demo-like study (the demo's protocol: shipped
classifiers, simulated judge) a researcher runs the shipped classifiers from the Classifiers
tab, codes a blinded sample of 20 messages, reads the agreement figures, then adds a classifier
rate as a predictor to an analysis run and finds it in the report."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_researcher_runs_codes_and_analyses_classifiers(
    live_server, page_factory, owner, artifacts
):
    from analysis.models import AnalysisRun
    from studyplatform.classifiers.library import shipped_refs
    from studyplatform.classifiers.models import ClassificationRun, HumanLabel
    from studyplatform.console.management.commands.seed_demo import demo_protocol
    from studyplatform.studies.services import study_create_from_protocol

    # given: the demo's protocol (every shipped classifier, the simulated judge) in a piloting
    # study filled with a simulated cohort whose participants all allowed classification
    doc = demo_protocol()
    doc["study"]["slug"] = "demo-like"
    study = study_create_from_protocol(doc=doc, author=owner)
    call_command("simulate_study", study.slug, participants=40, days=35, effect=0.5, seed=3)
    page = page_factory("en-US")
    # Classification and analysis run eagerly inside the request in tests: allow for that.
    page.set_default_timeout(240_000)
    page.goto(f"{live_server.url}/accounts/login/?next=/console/{study.slug}/classifiers/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill("pw-olivia")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Conversation classifiers").wait_for()

    # when: she runs every shipped classifier (no box ticked: all) with a budget
    page.get_by_label("Budget: at most this many judge calls").fill("1000000")
    page.get_by_role("button", name="Start a run").click()
    page.get_by_text(re.compile(r"Classification run \d+ started")).wait_for()
    run = ClassificationRun.objects.get(study=study)
    assert run.status == "done", run.error
    assert len(run.classifiers) == len(shipped_refs())
    assert page.locator(f'tr[data-run="{run.pk}"]').get_by_text("Done").count() == 1

    # and draws a blinded sample of 20 loneliness labels and codes them
    page.get_by_label("Classifier", exact=True).select_option("loneliness")
    page.get_by_label("Units in the sample").fill("20")
    page.get_by_label("Sample seed (empty: random, stored)").fill("7")
    page.get_by_role("button", name="Draw a coding sample").click()
    page.get_by_text("You have coded 0 of 20 units.").wait_for()
    for position in range(1, 21):
        form = page.locator(f'form[data-item="{position}"]')
        form.wait_for()
        # blind: the classifier's own answer is nowhere on the page
        assert form.locator("input[type=radio]:checked").count() == 0
        answer = "Yes" if position % 3 == 0 else "No"
        form.get_by_label(answer, exact=True).check()
        form.get_by_role("button", name="Save and go to the next unit").click()
    page.get_by_text("You have coded every unit of this sample.").wait_for()
    assert HumanLabel.objects.filter(coder=owner).count() == 20
    page.screenshot(path=str(artifacts / "classifier-coding-done.png"), full_page=True)

    # then: the agreement page compares the classifier with her codes
    page.get_by_role("link", name="See the agreement figures").click()
    table = page.locator("table[data-agreement]")
    table.wait_for()
    row = table.get_by_role("row", name=re.compile("classifier vs olivia"))
    assert row.get_by_role("cell").first.inner_text() == "20"
    assert "Cohen's kappa" in table.inner_text()
    page.screenshot(path=str(artifacts / "classifier-agreement.png"), full_page=True)

    # and she adds the loneliness rate to an analysis run and finds it in the report
    page.get_by_role("navigation", name="Study pages").get_by_role("link", name="Analyses").click()
    page.get_by_label(
        re.compile("Add a conversation-classifier rate as a predictor")
    ).select_option("cls_loneliness_rate")
    page.get_by_role("button", name="Start a run").click()
    page.get_by_text(re.compile(r"Analysis run \d+ started")).wait_for()
    analysis = AnalysisRun.objects.get(study=study)
    assert analysis.status == "done", analysis.error
    assert "cls_loneliness_rate" in analysis.params["plan"]["predictors"]
    page.get_by_role("link", name=f"Open report {analysis.pk}").click()
    report = page.frame_locator("iframe[data-report-frame]")
    report.locator("table[data-table]").first.wait_for()
    html = report.locator("html").evaluate("e => e.outerHTML")
    assert "cls_loneliness_rate_lag_within" in html
    assert "classifier loneliness@1" in html and "vs olivia (n=20)" in html
    page.screenshot(path=str(artifacts / "classifier-analysis-report.png"), full_page=True)
