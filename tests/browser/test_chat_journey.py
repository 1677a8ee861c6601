"""The chat journey in a real browser against the ASGI server: sign in, chat with a streamed
reply, stop, regenerate, import a ChatGPT export and continue it, a crisis phrase in
Portuguese shows crisis resources, and the researcher sees the alert."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import expect

from studyplatform.chat.models import Conversation, Message
from studyplatform.safety.models import SafetyAlert
from tests.browser.conftest import eventually
from tests.factories import launch_study
from tests.support.fake_upstream import FakeUpstream

pytestmark = [pytest.mark.browser]

FIXTURE = (
    Path(__file__).resolve().parents[1] / "chat" / "importers" / "fixtures" / ("conversations.json")
)


@pytest.fixture
def upstream_server():
    with FakeUpstream() as server:
        yield server


def test_chat_journey(
    asgi_server,
    page_factory,
    upstream_server,
    register_endpoint,
    owner,
    rct_doc,
    enroll,
    artifacts,
):
    from studyplatform.studies.services import study_create_from_protocol

    register_endpoint("loopback", base_url=upstream_server.base_url, models=["gpt-journey"])
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "chat-journey"
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": "loopback", "name": "gpt-journey", "context_tokens": 8000}
    study = study_create_from_protocol(doc=doc, author=owner)
    study = launch_study(study, owner)
    participant = enroll(study, email="bia@example.org", language="pt-br")

    page = page_factory("pt-BR", timezone_id="America/Sao_Paulo")
    # sign in with the emailed link
    page.goto(f"{asgi_server}/p/signin/")
    page.get_by_role("textbox", name="Endereço de e-mail").fill("bia@example.org")
    page.get_by_role("button", name="Envie-me um link de acesso por e-mail").click()
    page.get_by_role("heading", name="Confira o seu e-mail").wait_for()
    link = re.search(r"http://\S+/p/signin/\S+/", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.get_by_role("button", name="Continuar para a minha página do estudo").click()

    # chat: the reply streams in word by word; stop it part-way
    page.get_by_role("link", name="Converse com o assistente").click()
    page.get_by_role("button", name="Nova conversa").click()
    box = page.get_by_role("textbox", name="Sua mensagem")
    box.fill("[[tokens: 60]] [[delay_ms: 80]] Me conte uma história")
    page.get_by_role("button", name="Enviar").click()
    streaming = page.locator(".msg.assistant .body").last
    page.wait_for_function(
        "el => el.textContent.split(' ').length > 3", arg=streaming.element_handle()
    )
    page.get_by_role("button", name="Parar").click()
    page.get_by_text("Interrompida.").wait_for()
    stopped = eventually(lambda: Message.objects.get(role="assistant"))
    assert stopped.status == "cancelled" and 0 < len(stopped.content.split()) < 60

    # regenerate: a second version, kept as a sibling
    upstream_server.script(count=1, reply="Era uma vez uma resposta nova.")
    page.get_by_role("button", name="Gerar de novo").click()
    page.get_by_text("versão 2 de 2").wait_for()
    page.get_by_text("Era uma vez uma resposta nova.").wait_for()
    page.wait_for_load_state("load")
    page.screenshot(
        path=str(artifacts / "chat-regenerated-pt-br.png"), full_page=True, timeout=60_000
    )

    # import a ChatGPT export and continue one of its conversations
    page.goto(f"{asgi_server}/p/chat/import/")
    page.locator("input[type=file]").set_input_files(str(FIXTURE))
    page.get_by_role("button", name="Importar").click()
    page.get_by_test_id("import-result").wait_for()
    imported = Conversation.objects.filter(participant=participant, imported=True)
    assert imported.exists()
    target = imported.order_by("created_at").first()
    page.goto(f"{asgi_server}/p/chat/c/{target.pk}/")
    upstream_server.script(count=1, reply="Continuando a conversa importada.")
    page.get_by_role("textbox", name="Sua mensagem").fill("Vamos continuar?")
    # the page reloads once the reply is done: the next message is typed after that, not
    # between the reply's last words and the reload (which would drop it)
    with page.expect_navigation():
        page.get_by_role("button", name="Enviar").click()
    page.get_by_text("Continuando a conversa importada.").wait_for()
    continued = eventually(
        lambda: (
            Message.objects.select_related("parent")
            .filter(conversation=target, role="user", imported=False)
            .get()
        )
    )
    assert continued.parent is not None and continued.parent.imported

    # a crisis phrase in Portuguese shows the study's crisis resources at once
    page.get_by_role("textbox", name="Sua mensagem").fill("Eu não aguento mais, quero me matar")
    page.get_by_role("button", name="Enviar").click()
    crisis = page.get_by_role("alert").filter(has_text="CVV")
    crisis.wait_for()
    # let the reply finish (the page reloads after it) before taking the picture
    page.locator("#stop-button").wait_for(state="hidden", timeout=60_000)
    page.wait_for_load_state("load")
    crisis.wait_for()
    page.screenshot(
        path=str(artifacts / "chat-crisis-resources-pt-br.png"), full_page=True, timeout=60_000
    )
    alert = SafetyAlert.objects.get(participant=participant)
    assert alert.severity == "high"

    # the study's safety reviewer sees the alert
    from studyplatform.accounts.services import email_mark_verified
    from studyplatform.studies.services import membership_add

    reviewer = owner.__class__.objects.create_user(
        username="rita", email="rita@example.org", password="pw-rita-123"
    )
    email_mark_verified(user=reviewer, method="command", actor=None)
    membership_add(study=study, user=reviewer, role="safety_reviewer", actor=owner)
    researcher = page_factory("en-US")
    # through the console's sign-in page and safety queue, as a reviewer works (not the API)
    researcher.goto(f"{asgi_server}/accounts/login/?next=/console/{study.slug}/safety/")
    researcher.get_by_label("Username").fill("rita")
    researcher.get_by_label("Password").fill("pw-rita-123")
    researcher.get_by_role("button", name="Sign in").click()
    researcher.wait_for_url(f"**/console/{study.slug}/safety/")
    queue = researcher.get_by_role("region", name="Alert queue")
    expect(queue.get_by_role("cell", name=participant.code, exact=True)).to_be_visible()
    expect(queue).to_contain_text("quero me matar")
    queue.get_by_role("link", name=f"Review {participant.code}").click()
    researcher.wait_for_url(f"**/console/{study.slug}/safety/{alert.pk}/")
    expect(researcher.locator("blockquote")).to_contain_text("quero me matar")
