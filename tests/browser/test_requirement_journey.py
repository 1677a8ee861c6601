"""The usage requirement in a real browser: a participant who missed yesterday gets the nudge
email, follows its link, sees the in-app nudge and today's progress on the home page with what
is left, meets today's minimum and is offered the completion step (the panel's link and code).

Time is moved by data, never by the wall clock: the participant is enrolled three local days
before today, their sessions sit just after their local midnights, and the nudge for the missed
day is made due now."""

from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest
from django.core import mail
from django.utils import timezone

from studyplatform.chat.services import conversation_create, message_send
from studyplatform.compliance import services
from studyplatform.compliance.models import UsageNudge
from studyplatform.studies.services import study_create_from_protocol
from surveys import schedule_rules
from tests.factories import launch_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

_ids = itertools.count()


def session(participant, start: dt.datetime, minutes: int) -> None:
    """User messages a minute apart from ``start``, through the real send service."""
    conversation = conversation_create(participant=participant, now=start)
    for i in range(minutes + 1):
        message_send(
            participant=participant,
            conversation=conversation,
            text=f"hello {i}",
            client_request_id=f"b-{next(_ids)}",
            now=start + dt.timedelta(minutes=i),
        )


def test_a_participant_is_nudged_after_a_missed_day_then_offered_the_completion_step(
    live_server,
    page_factory,
    rct_doc,
    owner,
    enroll,
    artifacts,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.SITE_URL = live_server.url
    rct_doc["requirements"] = {
        "daily": {"active_minutes": 5},
        "nudge": {"local_time": "19:00", "channels": ["in_app", "email"]},
        "completion": {"min_days": 3, "of_days": 4},
    }
    study = launch_study(study_create_from_protocol(doc=rct_doc, author=owner), owner)
    participant = enroll(study, email="lia@example.org", timezone_name="America/Sao_Paulo")
    # enrolled three local days ago: today is day 4 of 4, the last counted day
    ctx = services._context(participant)
    today = schedule_rules.local_date_of(ctx, timezone.now())

    def at(days_ago: int, minute: int) -> dt.datetime:
        day = today - dt.timedelta(days=days_ago)
        return schedule_rules.local_to_utc(ctx, day, dt.time(0, minute))

    participant.enrolled_at = at(3, 1)
    participant.save(update_fields=["enrolled_at"])
    session(participant, at(3, 5), 5)  # day 1 met
    session(participant, at(2, 5), 6)  # day 2 met
    session(participant, at(1, 5), 2)  # day 3 (yesterday) missed
    session(participant, at(0, 5), 1)  # today: 1 minute so far
    services.compliance_refresh(participant=participant, since=dt.date.min)
    # yesterday's nudge comes due (19:00 today, whatever the hour now), the tick sends it
    UsageNudge.objects.filter(participant=participant).delete()
    UsageNudge.objects.create(
        participant=participant,
        period=2,
        period_first=today - dt.timedelta(days=1),
        period_last=today - dt.timedelta(days=1),
        due_at=timezone.now(),
        channels=["in_app", "email"],
    )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.nudge_tick(now=timezone.now())
    assert len(mail.outbox) == 1
    link = re.search(r"http://\S+/p/signin/\S+/", mail.outbox[0].body).group(0)

    # the participant follows the email's link on their phone
    page = page_factory("en-US", timezone_id="America/Sao_Paulo")
    page.goto(link)
    page.get_by_role("button", name="Continue to my study page").click()
    page.wait_for_url("**/p/")
    page.get_by_text("Yesterday you used the study chat less than").wait_for()
    goal = page.locator("#usage-progress")
    goal.get_by_role("heading", name="Your daily chat goal").wait_for()
    assert "1 of 5 minutes" in goal.inner_text()
    assert "Days with the goal met: 2 (at least 3 of 4 are needed)." in goal.inner_text()
    goal.get_by_text("1 more day with the goal met is needed to complete the study.").wait_for()
    assert page.locator("#completion-step").count() == 0
    page.screenshot(path=str(artifacts / "requirement-progress.png"), full_page=True)

    # later that day the participant chats long enough; the worker refreshes their day
    session(participant, at(0, 20), 5)
    services.compliance_refresh(participant=participant)
    page.reload()
    step = page.locator("#completion-step")
    step.get_by_text("You have completed the study's participation requirement.").wait_for()
    link = step.get_by_role("link", name="Confirm your completion on the recruitment site")
    assert (
        link.get_attribute("href") == "https://app.prolific.com/submissions/complete?cc=REPLACE_ME"
    )
    assert "REPLACE_ME" in step.inner_text()
    page.screenshot(path=str(artifacts / "requirement-completion.png"), full_page=True)
