"""The voice journey in Chromium with a fake microphone: a pilot tester joins a voice arm whose
chat and speech models are simulated, holds the button to talk, sees the transcript, sees the
reply's text and hears it (the page's audio element plays), then switches to typing."""

from __future__ import annotations

import copy
import math
import os
import re
import struct
import wave

import pytest
from django.core import mail
from playwright.sync_api import expect

from studyplatform.chat.models import Message
from tests.browser.conftest import CHROMIUM, eventually

pytestmark = [pytest.mark.browser]


def write_tone_wav(path, *, seconds: float = 4.0, rate: int = 48_000) -> None:
    """What the fake microphone plays (Chromium loops the file): a 440 Hz tone."""
    frames = int(seconds * rate)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
                for n in range(frames)
            )
        )


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium with a fake microphone fed from a WAV and the permission prompt answered yes
    (overrides the conftest's browser for this module)."""
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    expect.set_options(timeout=30_000)
    wav = tmp_path_factory.mktemp("mic") / "voice.wav"
    write_tone_wav(wav)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def voice_pilot_doc(rct_doc) -> dict:
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "voice-journey"
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": "simulated", "name": "pilot-chat"}
        arm["modality"] = "voice"
        arm["voice"] = {
            "stt": {"endpoint": "simulated", "name": "pilot-stt"},
            "tts": {"endpoint": "simulated", "name": "pilot-tts", "voice": "neutral"},
            "max_seconds": 30,
        }
    return doc


def test_voice_journey(
    asgi_server, page_factory, owner, rct_doc, enroll, artifacts, settings, tmp_path
):
    from studyplatform.participants.services import JoinContext
    from studyplatform.participants.services.enrollment import pilot_invite_create
    from studyplatform.studies.services import study_create_from_protocol, study_transition

    settings.MEDIA_ROOT = tmp_path / "media"
    study = study_create_from_protocol(doc=voice_pilot_doc(rct_doc), author=owner)
    study = study_transition(study=study, to="piloting", actor=owner)
    _, token = pilot_invite_create(study=study, label="Tester", actor=owner)
    participant = enroll(study, email="vo@example.org", join=JoinContext(pilot_token=token))
    assert participant.is_pilot

    page = page_factory("en-US", permissions=["microphone"])
    page.goto(f"{asgi_server}/p/signin/")
    page.get_by_role("textbox", name="Email address").fill("vo@example.org")
    page.get_by_role("button", name="Email me a sign-in link").click()
    link = re.search(r"http://\S+/p/signin/\S+/", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.get_by_role("button", name="Continue to my study page").click()
    page.get_by_role("link", name="Chat with the assistant").click()
    page.get_by_role("button", name="New conversation").click()

    # a voice arm opens with the hold-to-talk button; the text box waits behind "Type instead"
    talk = page.get_by_role("button", name="Hold to talk")
    expect(talk).to_be_visible()
    expect(page.get_by_role("textbox", name="Your message")).to_be_hidden()
    expect(page.get_by_test_id("pilot-mode")).to_be_visible()

    # hold to talk for about two seconds, then release
    talk.hover()
    page.mouse.down()
    expect(talk).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(2000)
    page.mouse.up()

    # the transcript shows as the participant's message, then the reply's text streams in
    user_bubble = page.locator(".msg.user .body").last
    expect(user_bubble).to_contain_text("[Pilot mode: simulated transcript]")
    reply_bubble = page.locator(".msg.assistant .body").last
    expect(reply_bubble).to_contain_text("Pilot mode: simulated reply")

    # and the reply is heard: the audio element plays
    audio = page.locator("#reply-audio")
    page.wait_for_function(
        "a => a.played.length > 0 && a.currentTime > 0", arg=audio.element_handle()
    )
    page.screenshot(path=str(artifacts / "voice-journey-reply.png"), full_page=True)
    expect(page.locator("#voice-stop")).to_be_hidden()  # shown only while a reply streams

    spoken = Message.objects.get(role="user", participant=participant)
    assert spoken.modality == "voice" and spoken.audio_ms >= 1000 and spoken.stt_ms is not None
    seconds = re.search(r"for ([0-9.]+) seconds", spoken.content).group(1)
    assert abs(float(seconds) * 1000 - spoken.audio_ms) < 100
    # the reply is spoken sentence by sentence; its timing is logged when the page has fetched
    # the last sentence's speech, which may land just after the first words play
    reply = eventually(
        lambda: Message.objects.filter(
            role="assistant", participant=participant, tts_ms__isnull=False
        ).first()
    )
    assert reply is not None, "the reply's speech timing was never logged"
    assert reply.status == "complete" and reply.audio_ms > 0
    # no keep-audio checkbox in this study: the recording was never written to disk
    assert not (tmp_path / "media" / "voice").exists()

    # keyboard: hold Space on the focused button to talk again
    talk.focus()
    page.keyboard.down(" ")
    expect(talk).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(1500)
    page.keyboard.up(" ")
    expect(page.locator(".msg.user")).to_have_count(2)
    expect(page.locator(".msg.assistant .body").nth(1)).to_contain_text("Pilot mode")

    # type instead: the text box appears and a typed message is logged as text
    page.locator("#stop-button").wait_for(state="hidden")
    page.get_by_role("button", name="Type instead").click()
    box = page.get_by_role("textbox", name="Your message")
    expect(box).to_be_visible()
    box.fill("Now I am typing")
    page.get_by_role("button", name="Send").click()
    page.get_by_text("Now I am typing").wait_for()
    expect(page.locator(".msg.assistant")).to_have_count(3)
    typed = eventually(
        lambda: Message.objects.filter(role="user").order_by("created_at", "pk").last()
    )
    assert typed.content == "Now I am typing"  # the text is encrypted at rest: read, not queried
    assert typed.modality == "text" and typed.audio_ms is None
