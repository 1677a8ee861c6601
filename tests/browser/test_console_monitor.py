"""A researcher watching a recruiting study in a real browser: sign in, open the dashboard, see
the funnel and the survey-compliance heatmap; screenshots at laptop and tablet widths."""

from __future__ import annotations

import pytest
from django.utils import timezone

from surveys.engine import schedule_tick
from surveys.models import Invitation
from surveys.services import response_save

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ANSWERS = {
    "who5": {f"who5_{i}": 3 for i in range(1, 6)},
    "ucla3": {f"ucla3_{i}": 1 for i in range(1, 4)},
    "phq9": {f"phq9_{i}": 0 for i in range(1, 10)},
}


def test_a_researcher_sees_the_funnel_and_compliance_on_the_dashboard(
    live_server, page_factory, recruiting_study, enroll, artifacts, settings
):
    settings.SITE_URL = live_server.url
    # given: two participants, their baseline invitations sent, one baseline completed
    first, second = enroll(recruiting_study), enroll(recruiting_study)
    now = timezone.now()
    schedule_tick(now=now)
    baseline = Invitation.objects.get(participant=first, entry_key="baseline")
    assert baseline.status == "sent"
    for key in baseline.instruments:
        response_save(invitation=baseline, instrument_key=key, answers=ANSWERS[key], submit=True)
    assert Invitation.objects.get(pk=baseline.pk).status == "completed"

    # when: the owner signs in and opens the dashboard
    page = page_factory("en-US", viewport={"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/accounts/login/?next=/console/{recruiting_study.slug}/dashboard/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill("pw-olivia")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Dashboard", exact=True).wait_for()

    # then: the funnel counts two consents, both still active
    totals = page.locator("#funnel-totals")
    assert totals.locator("div", has_text="Consented").locator("dd").inner_text() == "2"
    assert totals.locator("div", has_text="Active").locator("dd").inner_text() == "2"
    # and the heatmap has one row per participant: one completed baseline, one open
    heatmap = page.locator("svg[aria-labelledby='compliance-heatmap-title']")
    assert heatmap.locator("title", has_text=f"{first.code}, baseline: Completed").count() == 1
    assert heatmap.locator("title", has_text=f"{second.code}, baseline: Open").count() == 1
    # (SVG text has no innerText; its text content is what a screen reader gets)
    labels = heatmap.locator("text").all_text_contents()
    assert sorted(label for label in labels if label.startswith("P-")) == sorted(
        [first.code, second.code]
    )
    page.screenshot(path=str(artifacts / "console-dashboard-laptop.png"), full_page=True)

    # the tabs are keyboard-reachable links
    page.get_by_role("link", name="Participants").focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Participants", exact=True).wait_for()
    assert page.get_by_text(first.code).count() == 1

    # tablet width: the same page without horizontal page scroll (wide charts scroll inside)
    tablet = page_factory("en-US", viewport={"width": 768, "height": 1024})
    tablet.context.add_cookies(page.context.cookies())
    tablet.goto(f"{live_server.url}/console/{recruiting_study.slug}/dashboard/")
    tablet.get_by_role("heading", name="Dashboard", exact=True).wait_for()
    overflow = tablet.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    tablet.screenshot(path=str(artifacts / "console-dashboard-tablet.png"), full_page=True)
