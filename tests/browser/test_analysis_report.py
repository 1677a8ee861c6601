"""The analysis report renders in Chromium with its figures and tables."""

from __future__ import annotations

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_analysis_report_renders_with_figures_and_tables(
    live_server, page_factory, study, owner, artifacts
):
    from analysis.services import analysis_run_create, analysis_run_execute

    # given: a piloting study filled with a simulated cohort, analysed
    call_command("simulate_study", study.slug, participants=40, days=35, effect=0.5, seed=3)
    run = analysis_run_create(study=study, created_by=owner, enqueue=False)
    run = analysis_run_execute(run=run)
    assert run.status == "done", run.error
    # when: the study owner signs in and opens the report
    page = page_factory("en-US")
    page.goto(
        f"{live_server.url}/api-auth/login/?next=/api/studies/{study.slug}/"
        f"analysis-runs/{run.pk}/report/"
    )
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill("pw-olivia")
    page.get_by_role("button", name="Log in").click()
    page.locator("figure[data-figure]").first.wait_for()
    page.screenshot(path=str(artifacts / "analysis-report.png"), full_page=True)
    # then: every figure is an image that loaded, and the estimate tables are there
    figures = page.locator("figure[data-figure]")
    assert figures.count() >= 4
    names = {figures.nth(i).get_attribute("data-figure") for i in range(figures.count())}
    assert len(names) == figures.count()
    widths = page.eval_on_selector_all(
        "figure[data-figure] img", "imgs => imgs.map(i => i.naturalWidth)"
    )
    assert widths and all(w > 100 for w in widths)
    assert page.locator("table[data-table]").count() >= 1
    assert run.data_hash in page.content()
