"""Daily conversation task in a real browser: a Portuguese-speaking participant sees today's
task on the home and chat pages, starts a conversation from it, sees the task in that
conversation, and the model receives it with the system prompt."""

from __future__ import annotations

import copy
import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from studyplatform.chat.models import Conversation
from surveys.models import TaskAssignment
from tests.browser.conftest import eventually
from tests.factories import launch_study
from tests.support.fake_upstream import FakeUpstream

pytestmark = [pytest.mark.browser]

TASK = {
    "en": "Talk about something you are grateful for.",
    "pt-br": "Fale sobre algo pelo qual você é grato.",
}


@pytest.fixture
def upstream_server():
    with FakeUpstream() as server:
        yield server


def test_the_participant_starts_a_conversation_from_todays_task(
    asgi_server, page_factory, upstream_server, register_endpoint, owner, rct_doc, enroll, artifacts
):
    from studyplatform.studies.services import study_create_from_protocol

    register_endpoint("loopback", base_url=upstream_server.base_url, models=["gpt-tasks"])
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "task-journey"
    # One task: the same on every study day, so the test does not depend on the hour it runs.
    doc["tasks"] = [
        {
            "key": "personal",
            "rule": "in_order",
            "open_new_conversation": True,
            "items": [{"key": "grateful", "text": TASK}],
        }
    ]
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": "loopback", "name": "gpt-tasks", "context_tokens": 8000}
        arm["tasks"] = "personal"
    study = launch_study(study_create_from_protocol(doc=doc, author=owner), owner)
    participant = enroll(study, email="bia@example.org", language="pt-br")

    page = page_factory("pt-BR", timezone_id="America/Sao_Paulo")
    page.goto(f"{asgi_server}/p/signin/")
    page.get_by_role("textbox", name="Endereço de e-mail").fill("bia@example.org")
    page.get_by_role("button", name="Envie-me um link de acesso por e-mail").click()
    page.get_by_role("heading", name="Confira o seu e-mail").wait_for()
    link = re.search(r"http://\S+/p/signin/\S+/", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.get_by_role("button", name="Continuar para a minha página do estudo").click()

    # the home page shows today's task in Portuguese
    card = page.get_by_test_id("task-card")
    expect(card.get_by_role("heading", name="Tarefa de conversa de hoje")).to_be_visible()
    expect(card).to_contain_text(TASK["pt-br"])

    # so does the chat page, with the button that starts a conversation about it
    page.get_by_role("link", name="Converse com o assistente").click()
    card = page.get_by_test_id("task-card")
    expect(card).to_contain_text(TASK["pt-br"])
    card.get_by_role("button", name="Começar uma conversa sobre esta tarefa").click()

    # the new conversation shows the task it was opened from
    expect(page.get_by_test_id("task-note")).to_contain_text(TASK["pt-br"])
    # (the card itself is left out here: the note already says it)
    expect(page.get_by_test_id("task-card")).to_have_count(0)
    upstream_server.script(count=1, reply="Que bom ouvir isso!")
    page.get_by_role("textbox", name="Sua mensagem").fill("Sou grata pela minha irmã")
    page.get_by_role("button", name="Enviar").click()
    page.get_by_text("Que bom ouvir isso!").wait_for()
    # The reply is complete once the page has reloaded with it (server-rendered replies carry
    # data-id; the newest has the regenerate button).
    page.locator(".msg.assistant[data-id]").first.locator("button.regenerate").wait_for()
    page.wait_for_load_state("load")
    page.screenshot(
        path=str(artifacts / "chat-daily-task-pt-br.png"), full_page=True, timeout=60_000
    )

    # the model got the task with the system prompt, and the participant's own words unchanged
    body = upstream_server.requests[-1]
    system = next(m["content"] for m in body["messages"] if m["role"] == "system")
    assert TASK["pt-br"] in system
    assert body["messages"][-1] == {"role": "user", "content": "Sou grata pela minha irmã"}
    # the log: shown, a conversation opened from it, and a message after it
    # (read through eventually(): on SQLite the server's thread may still hold the chat
    # tables' write lock for the reply's last write)
    conversation = eventually(lambda: Conversation.objects.filter(participant=participant).first())
    row = eventually(
        lambda: (
            TaskAssignment.objects.select_related("first_message")
            .filter(participant=participant, first_message__isnull=False)
            .first()
        )
    )
    assert row is not None and row.task_key == "grateful"
    assert row.conversation_id == conversation.pk
    assert row.first_message.conversation_id == conversation.pk
