"""The participant journey in a real browser: Prolific link, screener, pt-BR consent, home,
sign out, emailed sign-in link, download my data, withdrawal with deletion."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from studyplatform.core.models import AuditEvent
from studyplatform.participants.models import (
    Allocation,
    ConsentRecord,
    DataDownload,
    Identity,
    Participant,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_participant_journey_from_prolific_link_to_withdrawal(
    live_server, page_factory, recruiting_study, artifacts, settings
):
    base = live_server.url
    settings.SITE_URL = base  # links in emails point at the live server
    slug = recruiting_study.slug

    # an ineligible visitor (English) gets a kind exit and leaves nothing behind
    page = page_factory("en-US")
    page.goto(f"{base}/s/{slug}/?PROLIFIC_PID=nope&STUDY_ID=S&SESSION_ID=X")
    page.get_by_role("link", name="Check if I can take part").click()
    page.get_by_label("How old are you?").fill("15")
    page.get_by_label("No", exact=True).check()
    page.get_by_label("Woman", exact=True).check()
    page.get_by_role("button", name="Continue").click()
    page.get_by_text("This study is for adults only.").wait_for()
    assert Participant.objects.count() == 0

    # an eligible participant arriving from Prolific, reading in Brazilian Portuguese
    page = page_factory("pt-BR", timezone_id="America/Sao_Paulo")
    page.goto(f"{base}/s/{slug}/?PROLIFIC_PID=5f9a77&STUDY_ID=S1&SESSION_ID=X1")
    assert page.url == f"{base}/s/{slug}/"  # the panel ids left the address bar (and history)
    page.get_by_role("link", name="Verificar se posso participar").click()
    page.get_by_label("Qual é a sua idade?").fill("29")
    page.get_by_label("Sim", exact=True).check()
    page.get_by_label("Mulher", exact=True).check()
    page.get_by_role("button", name="Continuar").click()
    page.get_by_role("heading", name="Consentimento para participar").wait_for()
    page.get_by_label("Li estas informações e concordo em participar.").check()
    page.get_by_label("Tenho 18 anos ou mais.").check()
    page.get_by_label("Digite seu nome completo para assinar").fill("Ana Souza")
    page.get_by_label("Endereço de e-mail").fill("ana.souza@example.org")
    page.get_by_role("button", name="Concordo e quero participar").click()
    page.get_by_role("heading", name="Boas-vindas ao estudo").wait_for()
    page.get_by_role("link", name="Ir para a minha página do estudo").click()
    page.get_by_text("Dia 1 de 28").wait_for()
    page.screenshot(path=str(artifacts / "participant-home-pt-br.png"), full_page=True)

    participant = Participant.objects.get()
    assert participant.language == "pt-br" and participant.timezone == "America/Sao_Paulo"
    assert Identity.objects.get().panel_pid == "5f9a77"
    assert ConsentRecord.objects.get().language == "pt-br"
    assert Allocation.objects.filter(participant=participant).exists()
    # the arm is concealed: neither key nor model appears on the participant's page
    assert "legacy" not in page.content() and "gpt-" not in page.content()

    # sign out, then sign back in with the emailed link
    page.get_by_role("button", name="Sair da conta").click()
    page.get_by_role("textbox", name="Endereço de e-mail").fill("ana.souza@example.org")
    page.get_by_role("button", name="Envie-me um link de acesso por e-mail").click()
    page.get_by_role("heading", name="Confira o seu e-mail").wait_for()
    link = re.search(r"http://\S+/p/signin/\S+/", mail.outbox[-1].body).group(0)
    page.goto(link)
    page.get_by_role("button", name="Continuar para a minha página do estudo").click()
    page.get_by_text("Dia 1 de 28").wait_for()

    # download my data
    page.get_by_role("link", name="Baixar meus dados").click()
    # Wait for the form's own navigation: reloading while it is under way detaches the page.
    with page.expect_navigation():
        page.get_by_role("button", name="Preparar meus dados").click()
    page.reload()
    with page.expect_download() as info:
        page.get_by_role("link", name="Baixar", exact=True).click()
    assert info.value.suggested_filename == f"my-data-{participant.code}.zip"

    # withdraw, deleting everything
    page.goto(f"{base}/p/withdraw/")
    page.get_by_label("Parar de participar e apagar minhas mensagens").check()
    page.get_by_label("Entendo que isto não pode ser desfeito.").check()
    page.get_by_role("button", name="Sair do estudo").click()
    page.get_by_role("heading", name="Você saiu do estudo").wait_for()

    participant.refresh_from_db()
    assert participant.status == "withdrawn" and participant.withdrawal_mode == "delete"
    assert not Identity.objects.filter(participant=participant).exists()
    assert participant.screener_answers == {}
    assert ConsentRecord.objects.get(participant=participant).signature_name == ""
    assert not DataDownload.objects.filter(participant=participant).exists()
    event = AuditEvent.objects.get(action="participant.withdraw")
    assert event.data["mode"] == "delete"
    assert "ana.souza" not in str(event.data) and "Ana Souza" not in str(event.data)
