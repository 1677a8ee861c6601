"""The chat page when our side fails mid-reply: a redis-server of the test's own is killed
while a reply streams. The participant keeps the words that arrived, reads a translated
retryable error, and the Retry button gets a reply once Redis is back."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from studyplatform.chat import services
from studyplatform.chat.models import Message
from studyplatform.participants.session import SESSION_KEY
from tests.browser.conftest import eventually
from tests.factories import launch_study
from tests.support.fake_upstream import FakeUpstream

pytestmark = [pytest.mark.browser]


@pytest.fixture
def upstream_server():
    with FakeUpstream() as server:
        yield server


def test_an_internal_failure_mid_reply_keeps_the_words_and_offers_retry(
    asgi_server, page_factory, upstream_server, register_endpoint, owner, rct_doc, enroll,
    throwaway_redis,
):  # fmt: skip
    from studyplatform.studies.services import study_create_from_protocol

    register_endpoint("loopback", base_url=upstream_server.base_url, models=["gpt-faults"])
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "chat-faults"
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": "loopback", "name": "gpt-faults", "context_tokens": 8000}
    study = launch_study(study_create_from_protocol(doc=doc, author=owner), owner)
    participant = enroll(study, email="bia@example.org", language="pt-br")
    conversation = services.conversation_create(participant=participant)
    # signed in as the emailed link would leave the participant (the journey test covers it)
    session = SessionStore()
    session[SESSION_KEY] = participant.pk
    session.save()
    page = page_factory("pt-BR")
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session.session_key, "url": asgi_server}]
    )
    page.goto(f"{asgi_server}/p/chat/c/{conversation.pk}/")

    # a slow reply starts streaming; Redis dies after a few words
    page.get_by_role("textbox", name="Sua mensagem").fill(
        "[[tokens: 60]] [[delay_ms: 60]] Me conte uma história"
    )
    page.get_by_role("button", name="Enviar").click()
    streaming = page.locator(".msg.assistant .body").last
    page.wait_for_function(
        "el => el.textContent.split(' ').length > 3", arg=streaming.element_handle()
    )
    throwaway_redis["kill"]()

    # the participant reads why, keeps the words, and gets a Retry button (no reload)
    page.get_by_text("Algo deu errado do nosso lado e a resposta parou.").wait_for()
    kept = streaming.text_content()
    assert len(kept.split()) > 3
    reply = eventually(lambda: Message.objects.get(role="assistant"))
    assert (reply.status, reply.error_code) == ("error", "internal_redis")
    assert reply.content.split()[:3] == kept.split()[:3]

    # Redis is back: Retry streams a new reply
    throwaway_redis["restart"]()
    upstream_server.script(count=1, reply="Voltei, aqui está a história.")
    page.get_by_role("button", name="Tentar de novo").last.click()
    page.get_by_text("Voltei, aqui está a história.").wait_for()
    # the words are on screen before the reply's row is written (the end of its stream follows)
    assert eventually(lambda: Message.objects.filter(role="assistant").count() == 2)
    assert Message.objects.filter(role="user").count() == 1
