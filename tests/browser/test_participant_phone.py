"""Participant pages on a phone (412x915, Brazilian Portuguese), issue 18's UX fixes: the crisis
box leaves the newest reply and its buttons in view, the language menu shows its whole label,
conversation titles do not repeat what was typed, and the data download is JSON/CSV with a
README in the participant's language."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import zipfile

import pytest
from django.core import mail
from django.template.defaultfilters import date as date_filter
from django.utils import translation

from studyplatform.chat.models import Conversation
from tests.factories import launch_study
from tests.support.fake_upstream import FakeUpstream

pytestmark = [pytest.mark.browser]

PHONE = {"width": 412, "height": 915}
EMAIL = "bia.souza@example.org"


@pytest.fixture
def upstream_server():
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def chat_study(register_endpoint, upstream_server, owner, rct_doc):
    from studyplatform.studies.services import study_create_from_protocol

    register_endpoint("loopback", base_url=upstream_server.base_url, models=["gpt-phone"])
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "phone-study"
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": "loopback", "name": "gpt-phone", "context_tokens": 8000}
    return launch_study(study_create_from_protocol(doc=doc, author=owner), owner)


def phone_page(page_factory):
    return page_factory("pt-BR", timezone_id="America/Sao_Paulo", viewport=PHONE)


def sign_in(page, base: str, email: str) -> None:
    """Through the emailed sign-in link, as a returning participant does."""
    page.goto(f"{base}/p/signin/")
    page.get_by_role("textbox", name="Endereço de e-mail").fill(email)
    page.get_by_role("button", name="Envie-me um link de acesso por e-mail").click()
    page.get_by_role("heading", name="Confira o seu e-mail").wait_for()
    link = re.search(r"http://\S+/p/signin/\S+/", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.get_by_role("button", name="Continuar para a minha página do estudo").click()


def send_and_wait_for_reply(page, text: str, replies_before: int) -> None:
    """Send a message and wait until its reply is complete and the page has reloaded (the
    reloaded page is the one with a regenerate button under the newest reply)."""
    page.get_by_role("textbox", name="Sua mensagem").fill(text)
    page.get_by_role("button", name="Enviar").click()
    # Server-rendered replies carry data-id (streamed bubbles do not); only the newest has
    # the regenerate button.
    page.locator(".msg.assistant[data-id]").nth(replies_before).locator(
        "button.regenerate"
    ).wait_for()
    page.wait_for_load_state("load")


def inside(box: dict, viewport: dict) -> bool:
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
        and box["y"] + box["height"] <= viewport["height"]
    )


def overlap(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def test_the_newest_reply_and_its_buttons_stay_visible_above_the_crisis_box(
    asgi_server, page_factory, upstream_server, chat_study, enroll, artifacts
):
    # given: a Brazilian participant on a phone, in a conversation
    enroll(chat_study, email=EMAIL, language="pt-br")
    page = phone_page(page_factory)
    sign_in(page, asgi_server, EMAIL)
    page.get_by_role("link", name="Converse com o assistente").click()
    page.get_by_role("button", name="Nova conversa").click()
    # a long first reply, so the page scrolls (the box hid the reply only then)
    upstream_server.script(count=1, reply=" ".join(["Claro, posso ajudar com isso."] * 40))
    send_and_wait_for_reply(page, "Oi, você pode me ajudar com uma coisa?", replies_before=0)

    # when: they write a crisis message and the reply arrives
    upstream_server.script(
        count=1,
        reply=(
            "Sinto muito que você esteja passando por isso. Você não está sozinha. "
            "Por favor, ligue agora para o CVV no 188: é gratuito e funciona 24 horas."
        ),
    )
    send_and_wait_for_reply(page, "Eu não aguento mais, quero me matar", replies_before=1)

    # then: the crisis resources are on screen ...
    crisis = page.locator("#crisis")
    crisis.get_by_text("CVV").first.wait_for()
    crisis_box = crisis.bounding_box()
    assert inside(crisis_box, PHONE), crisis_box
    # ... and so are the newest reply and its regenerate button, not under the crisis box
    newest = page.locator(".msg.assistant").last
    regenerate = newest.locator("button.regenerate")
    assert "CVV no 188" in newest.inner_text()
    page.screenshot(path=str(artifacts / "chat-crisis-phone-pt-br.png"))
    for element in (newest, regenerate):
        box = element.bounding_box()
        assert inside(box, PHONE), box
        assert not overlap(box, crisis_box), (box, crisis_box)
        assert not overlap(box, page.locator("#composer").bounding_box())


def test_the_language_menu_shows_its_whole_label_on_a_phone(
    asgi_server, page_factory, recruiting_study, artifacts
):
    # given: a Brazilian visitor opening the study page on a phone
    page = phone_page(page_factory)
    page.goto(f"{asgi_server}/s/{recruiting_study.slug}/")
    menu = page.locator("#lang-select")

    # then: the menu names the language as Brazilians do ...
    assert menu.locator("option:checked").inner_text() == "Português (Brasil)"
    assert [o.strip() for o in menu.locator("option").all_inner_texts()] == [
        "English",
        "Português (Brasil)",
    ]
    page.screenshot(path=str(artifacts / "language-menu-phone-pt-br.png"))
    # ... on screen, and wide enough for the whole label (a select cuts text it has no room
    # for, which is how "Português Brasile" came about): the label's rendered width in the
    # menu's own font, plus room for the arrow, fits inside the menu
    assert inside(menu.bounding_box(), PHONE)
    fit = menu.evaluate(
        """select => {
            const style = getComputedStyle(select);
            const context = document.createElement("canvas").getContext("2d");
            context.font = style.font;
            const label = select.options[select.selectedIndex].text;
            const room = select.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight) - 16;
            return {label: context.measureText(label).width, room: room};
        }"""
    )
    assert fit["label"] <= fit["room"], fit


def test_conversation_titles_do_not_repeat_an_email_or_phone_number_typed_in_the_chat(
    asgi_server, page_factory, upstream_server, chat_study, enroll
):
    # given: a participant whose first message holds their email address and phone number
    participant = enroll(chat_study, email=EMAIL, language="pt-br")
    page = phone_page(page_factory)
    sign_in(page, asgi_server, EMAIL)
    page.get_by_role("link", name="Converse com o assistente").click()
    page.get_by_role("button", name="Nova conversa").click()
    upstream_server.script(count=1, reply="Anotado.")
    send_and_wait_for_reply(
        page,
        f"Meu e-mail é {EMAIL} e meu celular é (11) 98765-4321, me lembre disso",
        replies_before=0,
    )

    # when: they open the list of their conversations
    page.get_by_role("link", name="Todas as conversas").click()

    # then: the conversation has a neutral, dated title in Portuguese; nothing they typed
    conversation = Conversation.objects.get(participant=participant)
    with translation.override("pt-br"):
        expected = f"Conversa, {date_filter(conversation.created_at, 'j M')}"
    titles = page.locator("ul.conversations li a").all_inner_texts()
    assert titles == [expected]
    listing = page.locator("main").inner_text()
    assert EMAIL not in listing and "98765" not in listing and "Meu e-mail" not in listing
    assert conversation.title == ""


def test_the_data_download_is_json_and_csv_with_a_readme_in_portuguese(
    asgi_server, page_factory, chat_study, enroll, tmp_path, settings
):
    # given: a Brazilian participant who signed in on their phone
    settings.MEDIA_ROOT = tmp_path / "media"
    participant = enroll(chat_study, email=EMAIL, language="pt-br")
    page = phone_page(page_factory)
    sign_in(page, asgi_server, EMAIL)

    # when: they prepare their data and download it
    page.get_by_role("link", name="Baixar meus dados").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Preparar meus dados").click()
    page.goto(f"{asgi_server}/p/data/")  # the archive is built on commit (eager worker)
    with page.expect_download() as info:
        page.get_by_role("link", name="Baixar", exact=True).click()
    archive = zipfile.ZipFile(io.BytesIO(open(info.value.path(), "rb").read()))  # noqa: SIM115

    # then: the README is in Portuguese ...
    readme = archive.read("README.txt").decode()
    assert f"Código de participante: {participant.code}" in readme
    assert "Cada tabela aparece duas vezes" in readme
    # ... each table comes as CSV and JSON, and nested values in the CSV are JSON
    names = set(archive.namelist())
    assert {"consent.csv", "consent.json", "participant.csv", "participant.json"} <= names
    consent = next(csv.DictReader(io.StringIO(archive.read("consent.csv").decode())))
    assert json.loads(consent["choices"]) == json.loads(archive.read("consent.json"))[0]["choices"]
    screener = next(csv.DictReader(io.StringIO(archive.read("participant.csv").decode())))
    assert json.loads(screener["screener_answers"])["age"] == 30
