"""Issue #16's journey on the shipped example examples/factorial-voice-rct.yaml (3 x 3 factorial,
voice arms, daily tasks, 5 minutes a day, completion at 24 of 28 days), in Chromium with a fake
microphone: the study is imported and piloted with simulated models; a pilot tester allocated to
a voice arm misses a day, gets the nudge by email and in the app, sees today's task, holds to
talk, sees the transcript, reads the reply and hears it, then meets the day's minimum and is
offered the completion step.

Time is moved by data, never by the wall clock: after joining, the tester's enrollment is set to
00:01 local time 27 days ago (today is the last counted day), their past days' chat is sent
through the real service at fixed local times, and the nudge beat runs at 19:00 local on each
past day. No assertion depends on the hour the test runs."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import expect

from studyplatform.chat.models import Message
from studyplatform.compliance import services as compliance
from studyplatform.compliance.models import UsageNudge
from studyplatform.participants.services import JoinContext
from studyplatform.participants.services.enrollment import pilot_invite_create
from studyplatform.studies.protocol import parse_protocol_text
from studyplatform.studies.protocol.voice import arm_voice
from studyplatform.studies.services import study_create_from_protocol, study_transition
from surveys import schedule_rules
from surveys.daily_tasks import task_text
from surveys.models import TaskAssignment
from tests.browser.conftest import eventually
from tests.browser.test_requirement_journey import session
from tests.browser.test_voice_journey import browser  # noqa: F401  (Chromium with a fake mic)

pytestmark = [pytest.mark.browser]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "factorial-voice-rct.yaml"
ZONE = "America/Sao_Paulo"
TODAY = 27  # study day of "today": the 28th and last day the completion rule counts
MISSED = {5, 12, 19, 26}  # 26 is yesterday: 23 of the 27 past days met, today decides


def test_factorial_voice_journey(
    asgi_server,
    page_factory,
    owner,
    enroll,
    artifacts,
    settings,
    tmp_path,
    django_capture_on_commit_callbacks,
):
    settings.MEDIA_ROOT = tmp_path / "media"
    doc = parse_protocol_text(EXAMPLE.read_text())
    study = study_create_from_protocol(doc=doc, author=owner)
    study = study_transition(study=study, to="piloting", actor=owner)
    assert {a.provider for a in study.arms.filter(is_active=True)} == {"simulated"}

    # Pilot testers join through the real allocation until one lands in a voice arm: 6 of the 9
    # cells are spoken and every permuted block holds each cell once or twice, so one of the
    # first 7 testers must.
    for n in range(7):
        _, token = pilot_invite_create(study=study, label=f"Tester {n}", actor=owner)
        participant = enroll(
            study,
            email=f"tester{n}@example.org",
            answers={"age": 34, "gender": "woman"},
            choices={"agree": True, "adult": True, "share_chats": False, "keep_audio": False},
            timezone_name=ZONE,
            join=JoinContext(pilot_token=token),
        )
        arm = participant.allocation.arm
        if arm_voice(study.protocol, arm.key):
            break
    else:
        pytest.fail("permuted blocks gave 7 testers in a row a text arm")
    assert participant.is_pilot and arm.key.split("_")[0] in ("neutral", "engaging")
    task_list = next(a["tasks"] for a in study.protocol["arms"] if a["key"] == arm.key)

    # Move time: enrolled at 00:01 local 27 days ago; the future nudges are planned again from
    # there, as after a time-zone change.
    ctx = compliance._context(participant)
    today = schedule_rules.local_date_of(ctx, participant.enrolled_at)
    day0 = today - dt.timedelta(days=TODAY)

    def local(day: int, hour: int, minute: int) -> dt.datetime:
        return schedule_rules.local_to_utc(
            ctx, day0 + dt.timedelta(days=day), dt.time(hour, minute)
        )

    participant.enrolled_at = local(0, 0, 1)
    participant.save(update_fields=["enrolled_at"])
    ctx = compliance._context(participant)
    compliance.nudges_resync(participant=participant, now=participant.enrolled_at)
    assert UsageNudge.objects.filter(participant=participant, period=TODAY - 1).exists()

    # the past days: 5 minutes of chat just after local midnight, except on the missed days
    for day in range(TODAY):
        if day not in MISSED:
            session(participant, local(day, 0, 5), 5)
    compliance.compliance_refresh(participant=participant, since=dt.date.min)
    # the nudge beat at 19:00 local on each past day; the last tick is today's, about yesterday
    mail.outbox.clear()
    for day in range(1, TODAY + 1):
        with django_capture_on_commit_callbacks(execute=True):
            compliance.nudge_tick(now=local(day, 19, 0))
    sent = UsageNudge.objects.filter(participant=participant, status="sent")
    assert sorted(sent.values_list("period", flat=True)) == sorted(MISSED)
    nudge_mail = [m for m in mail.outbox if m.to == [f"tester{n}@example.org"]]
    assert len(nudge_mail) == len(MISSED)
    link = re.search(r"http://\S+/p/signin/\S+/", nudge_mail[-1].body).group(0)

    # the tester follows the last nudge email's sign-in link
    page = page_factory("en-US", permissions=["microphone"], timezone_id=ZONE)
    page.goto(link)
    page.get_by_role("button", name="Continue to my study page").click()
    page.wait_for_url("**/p/")
    expect(
        page.get_by_text("Yesterday you chatted with the assistant for less than")
    ).to_be_visible()
    goal = page.locator("#usage-progress")
    expect(goal).to_contain_text("Days with the goal met: 23 (at least 24 of 28 are needed).")
    expect(goal).to_contain_text("1 more day with the goal met is needed to complete the study.")
    expect(page.locator("#completion-step")).to_have_count(0)

    # today's task: the card shows the task of the arm's task level for study day 27
    shown = TaskAssignment.objects.get(participant=participant, study_day=TODAY)
    assert shown.list_key == task_list
    task = task_text(shown, "en")
    expect(page.get_by_test_id("task-card")).to_contain_text(task)
    page.screenshot(path=str(artifacts / "factorial-journey-nudge.png"), full_page=True)

    # the chat page of a voice arm: the task card, and hold-to-talk instead of the text box
    page.get_by_role("link", name="Chat with the assistant").click()
    expect(page.get_by_test_id("task-card")).to_contain_text(task)
    page.get_by_role("button", name="New conversation").click()
    talk = page.get_by_role("button", name="Hold to talk")
    expect(talk).to_be_visible()
    expect(page.get_by_role("textbox", name="Your message")).to_be_hidden()
    talk.hover()
    page.mouse.down()
    expect(talk).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(2000)
    page.mouse.up()

    # the transcript is the tester's message; the reply's text appears, then it is heard
    expect(page.locator(".msg.user .body").last).to_contain_text(
        "[Pilot mode: simulated transcript]"
    )
    expect(page.locator(".msg.assistant .body").last).to_contain_text("Pilot mode")
    audio = page.locator("#reply-audio")
    page.wait_for_function(
        "a => a.played.length > 0 && a.currentTime > 0", arg=audio.element_handle()
    )
    spoken = Message.objects.get(participant=participant, role="user", modality="voice")
    assert spoken.audio_ms >= 1000
    reply = eventually(  # logged once the page fetched the last sentence's speech
        lambda: Message.objects.filter(
            participant=participant, role="assistant", tts_ms__isnull=False
        ).first()
    )
    assert reply is not None, "the reply's speech timing was never logged"
    assert reply.status == "complete" and reply.audio_ms > 0
    # keep_audio was not ticked: the recording was discarded after transcription
    assert not (tmp_path / "media" / "voice").exists()
    page.screenshot(path=str(artifacts / "factorial-journey-voice.png"), full_page=True)

    # today is not met by a short spoken turn: still no completion step
    compliance.compliance_refresh(participant=participant)
    page.goto(f"{asgi_server}/p/")
    expect(page.locator("#usage-progress")).to_contain_text(
        "1 more day with the goal met is needed to complete the study."
    )
    expect(page.locator("#completion-step")).to_have_count(0)

    # later today the tester chats 5 minutes more; the worker refreshes the day
    session(participant, local(TODAY, 0, 40), 5)
    compliance.compliance_refresh(participant=participant)
    page.reload()
    step = page.locator("#completion-step")
    expect(step).to_contain_text("You have completed the study's participation requirement.")
    link = step.get_by_role("link", name="Confirm your completion on the recruitment site")
    assert link.get_attribute("href") == doc["study"]["recruitment"]["completion_url"]
    page.screenshot(path=str(artifacts / "factorial-journey-completion.png"), full_page=True)
