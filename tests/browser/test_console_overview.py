"""One study tab bar on every console page and the overview at /console/<slug>/, in a browser:
the owner starts at the overview, follows a next step, and meets the same tabs on design and
monitoring pages; another researcher's study stays a 404."""

from __future__ import annotations

import pytest

from studyplatform.studies.services import study_create_from_protocol

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _tab_names(page) -> list[str]:
    return page.get_by_role("navigation", name="Study pages").get_by_role("link").all_inner_texts()


def test_the_owner_starts_at_the_overview_and_meets_one_tab_bar_everywhere(
    live_server, page_factory, recruiting_study, enroll, make_user, rct_doc, artifacts
):
    enroll(recruiting_study)
    slug = recruiting_study.slug
    page = page_factory("en-US", viewport={"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/accounts/login/?next=/console/{slug}/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill("pw-olivia")
    page.get_by_role("button", name="Sign in").click()

    # the overview: status, version, arms, enrollment, open alerts, next steps
    page.get_by_role("heading", name=recruiting_study.title, exact=True).wait_for()
    study_facts = page.locator("[data-overview=study]")
    assert study_facts.locator("div", has_text="Status").locator("dd").inner_text() == "Recruiting"
    version = str(recruiting_study.current_version.number)
    assert study_facts.locator("div", has_text="Protocol version").locator("dd").inner_text() == (
        version
    )
    assert page.locator("[data-count=active] dd").inner_text() == "1"
    assert page.locator("[data-count=open-alerts] dd").inner_text() == "0"
    arms = page.locator("[data-overview=arms] li")
    assert arms.count() == recruiting_study.arms.count()
    overview_tabs = _tab_names(page)
    assert overview_tabs[0] == "Overview"
    page.screenshot(path=str(artifacts / "console-overview.png"), full_page=True)

    # a next step leads to its page, which has the same tab bar
    next_steps = page.locator("[data-overview=next-steps]")
    next_steps.get_by_role("link", name="Follow enrollment and survey compliance").click()
    page.get_by_role("heading", name="Dashboard", exact=True).wait_for()
    assert _tab_names(page) == overview_tabs
    # design side and monitor side share it too
    page.get_by_role("navigation", name="Study pages").get_by_role("link", name="Design").click()
    page.get_by_role("heading", name="Design", exact=True).wait_for()
    assert _tab_names(page) == overview_tabs
    page.get_by_role("navigation", name="Study pages").get_by_role("link", name="Overview").click()
    page.get_by_role("heading", name=recruiting_study.title, exact=True).wait_for()

    # another researcher's study is not found, overview included
    rct_doc["study"]["slug"] = "someone-elses"
    study_create_from_protocol(doc=rct_doc, author=make_user("otto"))
    response = page.goto(f"{live_server.url}/console/someone-elses/")
    assert response.status == 404
