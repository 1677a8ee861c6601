"""The researcher's design journey in a real browser: sign in, create a study from a template,
edit the schedule and see the YAML and calendar follow, fix a YAML error, invite a pilot
tester, preview the pt-BR consent page, and launch once the checklist passes."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from studyplatform.studies.models import Study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_researcher_designs_pilots_and_launches_a_study(
    live_server, page_factory, enroll, artifacts
):
    base = live_server.url
    page = page_factory("en-US", viewport={"width": 1500, "height": 1000})

    # sign up as a researcher
    page.goto(f"{base}/accounts/login/?next=/console/")
    page.get_by_role("link", name="Create a researcher account").click()
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Email address").fill("rita@example.org")
    page.get_by_label("Password", exact=True).fill("pw-rita-long-enough")
    page.get_by_label("Password confirmation").fill("pw-rita-long-enough")
    page.get_by_role("button", name="Create account").click()

    # confirm the address from the emailed link, then sign in
    page.get_by_role("heading", name="Check your email to finish").wait_for()
    link = re.search(r"http\S+(/accounts/verify-email/\S+/)", mail.outbox[-1].body).group(1)
    page.goto(f"{base}{link}")
    page.get_by_role("button", name="Confirm my address").click()
    page.get_by_role("link", name="Sign in").first.click()
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill("pw-rita-long-enough")
    page.get_by_role("button", name="Sign in").click()

    # create a study from the companion-rct template
    page.get_by_role("link", name="New study").click()
    page.get_by_label(re.compile(r"\(companion-rct\)")).check()
    page.get_by_label("Short name (slug)").fill("my-rct")
    page.get_by_label("Title", exact=True).fill("My RCT")
    page.get_by_role("button", name="Create study").click()
    page.get_by_role("heading", name="Design", exact=True).wait_for()
    expect(page.get_by_role("link", name="My RCT")).to_be_visible()  # the study tab bar's header

    # switch both arms to the simulated endpoint in the arms form
    arms = page.locator("#section-arms")
    arms.locator("summary").click()
    for i in (0, 1):
        arms.locator(f"#id_arms-{i}-endpoint").select_option("simulated")
    arms.get_by_role("button", name="Save Arms and models").click()
    page.get_by_text("Saved as protocol version 2.").wait_for()

    # the weekly survey every 14 days: the YAML view follows the form before saving
    schedule = page.locator("#section-schedule")
    schedule.locator("summary").click()
    yaml_box = page.locator("#id_yaml-yaml")
    weekly_row = schedule.locator("fieldset.row", has=page.locator("legend", has_text="weekly"))
    weekly_row.get_by_label("Every N days").fill("14")
    expect(yaml_box).to_have_value(re.compile(r"every_days: 14"))
    schedule.get_by_role("button", name="Save Survey schedule").click()
    page.get_by_text("Saved as protocol version 3.").wait_for()
    page.locator("#section-schedule summary").click()
    calendar = page.frame_locator("#calendar-frame")
    expect(calendar.locator('tr[data-entry="weekly"]')).to_have_count(2)
    page.screenshot(path=str(artifacts / "console-designer-schedule.png"), full_page=True)

    # a validation error in the YAML editor, shown with its line, then fixed
    text = yaml_box.input_value()
    line = text.splitlines().index("  duration_days: 28") + 1
    yaml_box.fill(text.replace("  duration_days: 28", "  duration_days: -1"))
    errors = page.locator("#yaml-errors")
    expect(errors).to_contain_text(f"Line {line}: study.duration_days: must be at least 1")
    page.screenshot(path=str(artifacts / "console-designer-yaml-error.png"), full_page=True)
    yaml_box.fill(text)
    expect(page.locator("#yaml-status")).to_have_text("Valid protocol.")
    expect(errors).to_be_empty()

    # preview the consent page in Brazilian Portuguese
    page.locator("#preview-page").select_option("consent")
    page.locator("#preview-lang").select_option("pt-br")
    page.get_by_role("button", name="Show preview").click()
    preview = page.frame_locator("#preview-frame")
    expect(preview.get_by_role("heading", name="Consentimento para participar")).to_be_visible()
    expect(preview.get_by_role("button", name="Concordo e quero participar")).to_be_disabled()

    # pilot: start piloting and invite a tester
    page.get_by_role("link", name="Pilot and launch").click()
    page.get_by_role("button", name="Start piloting").click()
    page.get_by_label("Who is it for?").fill("Bea (tester)")
    page.get_by_role("button", name="Create invitation").click()
    expect(page.locator("#new-pilot-link")).to_contain_text("/s/my-rct/?pilot=")

    # launching is blocked until the models were tested
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("Not launched: 2 checklist items fail.").wait_for()
    page.get_by_role("button", name="Test models").click()
    page.get_by_text("Arm current: the model replied.").wait_for()
    page.screenshot(path=str(artifacts / "console-launch-checklist.png"), full_page=True)
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("Launched: the study is recruiting.").wait_for()
    study = Study.objects.get(slug="my-rct")
    assert study.status == "recruiting"

    # two participants enroll (simulated model); the dashboard shows them
    import datetime as dt

    from surveys.engine import schedule_tick

    for _ in range(2):
        enroll(study)
    schedule_tick(now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    page.goto(f"{base}/console/my-rct/dashboard/")
    expect(page.locator("svg").first).to_be_visible()
    page.get_by_text("Consented").first.wait_for()
    assert page.locator("text=/P-[0-9A-Z]{8}/").count() >= 2  # heatmap rows
    page.screenshot(path=str(artifacts / "console-dashboard-after-launch.png"), full_page=True)
