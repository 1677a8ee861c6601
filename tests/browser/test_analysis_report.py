"""The analysis report renders in Chromium with its figures and tables, inside the console's
frame (tab bar and all), opened from the analyses page as a researcher would."""

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
    # when: the study owner signs in to the console and opens the report from the analyses page
    page = page_factory("en-US")
    page.goto(f"{live_server.url}/accounts/login/?next=/console/{study.slug}/analyses/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill("pw-olivia")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Analyses", exact=True).wait_for()
    page.get_by_role("link", name=f"Open report {run.pk}").click()
    page.wait_for_url(f"**/console/{study.slug}/analyses/{run.pk}/report/")
    # the report sits in the console frame: the study tab bar, Analyses the current tab
    tabs = page.get_by_role("navigation", name="Study pages")
    assert tabs.get_by_role("link", name="Analyses").get_attribute("aria-current") == "page"
    report = page.frame_locator("iframe[data-report-frame]")
    report.locator("figure[data-figure]").first.wait_for()
    page.screenshot(path=str(artifacts / "analysis-report.png"), full_page=True)
    # then: every figure is an image that loaded, and the estimate tables are there
    figures = report.locator("figure[data-figure]")
    assert figures.count() >= 4
    names = {figures.nth(i).get_attribute("data-figure") for i in range(figures.count())}
    assert len(names) == figures.count()
    widths = report.locator("figure[data-figure] img").evaluate_all(
        "imgs => imgs.map(i => i.naturalWidth)"
    )
    assert widths and all(w > 100 for w in widths)
    assert report.locator("table[data-table]").count() >= 1
    assert run.data_hash in report.locator("html").evaluate("e => e.outerHTML")
    # and the way back to the console is one click
    tabs.get_by_role("link", name="Overview").click()
    page.get_by_role("heading", name=study.title, exact=True).wait_for()
