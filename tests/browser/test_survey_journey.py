"""The survey journey in a real browser: a pt-BR participant follows the emailed invitation,
answers part of WHO-5, saves for later, returns through "What's due", finds the answers kept,
submits all three baseline questionnaires; a researcher then sees the survey completed in the
console."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.utils import timezone

from studyplatform.studies.services import study_create_from_protocol
from surveys.engine import schedule_tick
from surveys.models import Invitation, Response
from tests.factories import launch_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# TEST FIXTURE ONLY: placeholder wording written for this test, standing in for the validated
# Brazilian Portuguese WHO-5 a researcher would paste into the protocol. Not a translation.
TEST_WHO5_PT_BR = {
    "instructions": "[teste] Instruções de exemplo para o teste automatizado.",
    "items": {f"who5_{i}": f"[teste] Afirmação de exemplo {i}" for i in range(1, 6)},
    "options": {
        "5": "[teste] opção 5",
        "4": "[teste] opção 4",
        "3": "[teste] opção 3",
        "2": "[teste] opção 2",
        "1": "[teste] opção 1",
        "0": "[teste] opção 0",
    },
}


@pytest.fixture(autouse=True)
def _fresh_schedule_cache():
    # surveys.engine caches schedule entries by protocol-version id, which SQLite reuses.
    from surveys.engine import _entries

    _entries.cache_clear()
    yield
    _entries.cache_clear()


def test_a_participant_saves_returns_and_completes_the_baseline_then_a_researcher_sees_it(
    live_server,
    page_factory,
    rct_doc,
    owner,
    enroll,
    member_of,
    artifacts,
    settings,
    django_capture_on_commit_callbacks,
):
    base = live_server.url
    settings.SITE_URL = base  # links in emails point at the live server
    rct_doc["surveys"]["translations"] = {"who5": {"pt-br": TEST_WHO5_PT_BR}}
    study = study_create_from_protocol(doc=rct_doc, author=owner)
    study = launch_study(study, owner)
    participant = enroll(study, language="pt-br", email="lia@example.org")

    # the beat tick sends the baseline invitation by email
    with django_capture_on_commit_callbacks(execute=True):
        schedule_tick(now=timezone.now())
    invitation = Invitation.objects.get(participant=participant, entry_key="baseline")
    link = re.search(r"http://\S+/p/signin/\S+/", mail.outbox[-1].body).group(0)

    # the participant opens the link on their phone and confirms the sign-in
    page = page_factory("pt-BR", timezone_id="America/Sao_Paulo")
    page.goto(link)
    page.get_by_role("button", name="Continuar para a minha página do estudo").click()
    page.wait_for_url(f"**/p/surveys/{invitation.pk}/who5/")
    page.get_by_role("heading", name="Índice de Bem-Estar da OMS (WHO-5)").wait_for()
    page.get_by_text("[teste] Instruções de exemplo").wait_for()

    # answer two items, then save and leave
    page.get_by_role("group", name="[teste] Afirmação de exemplo 1").get_by_label(
        "[teste] opção 4"
    ).check()
    page.get_by_role("group", name="[teste] Afirmação de exemplo 2").get_by_label(
        "[teste] opção 2"
    ).check()
    # Buttons are found by their value, not their text: pt-BR wording is added later.
    page.locator("button[name=action][value=save]").click()
    page.wait_for_url(f"{base}/p/")
    draft = Response.objects.get(invitation=invitation, instrument_key="who5")
    assert draft.status == "draft" and draft.answers == {"who5_1": 4, "who5_2": 2}

    # come back through "What's due": the saved answers are there
    page.goto(f"{base}/p/")
    page.locator(f"#due-heading ~ ul a[href='/p/surveys/{invitation.pk}/']").click()
    page.wait_for_url(f"**/p/surveys/{invitation.pk}/who5/")
    group1 = page.get_by_role("group", name="[teste] Afirmação de exemplo 1")
    assert group1.get_by_label("[teste] opção 4").is_checked()
    assert (
        page.get_by_role("group", name="[teste] Afirmação de exemplo 2")
        .get_by_label("[teste] opção 2")
        .is_checked()
    )
    page.screenshot(path=str(artifacts / "survey-who5-pt-br.png"), full_page=True)

    # finish WHO-5 and submit
    for i in (3, 4, 5):
        page.get_by_role("group", name=f"[teste] Afirmação de exemplo {i}").get_by_label(
            "[teste] opção 3"
        ).check()
    page.locator("button[name=action][value=submit]").click()

    # UCLA-3 (shipped pt-BR option labels), then PHQ-9
    page.wait_for_url(f"**/p/surveys/{invitation.pk}/ucla3/")
    for i in (1, 2, 3):
        page.locator(f"#item-ucla3_{i}").get_by_label("Quase nunca").check()
    page.locator("button[name=action][value=submit]").click()
    page.wait_for_url(f"**/p/surveys/{invitation.pk}/phq9/")
    for i in range(1, 10):
        page.locator(f"#item-phq9_{i} input[value='0']").check()
    page.locator("button[name=action][value=submit]").click()
    page.wait_for_url(f"**/p/surveys/{invitation.pk}/thanks/")

    invitation.refresh_from_db()
    assert invitation.status == "completed"
    who5 = Response.objects.get(invitation=invitation, instrument_key="who5")
    assert who5.answers == {"who5_1": 4, "who5_2": 2, "who5_3": 3, "who5_4": 3, "who5_5": 3}
    assert who5.scores == {"raw": 15, "percentage": 60}

    # a researcher with a study role sees the completed baseline in the console, as they would
    member_of(study, "monitor", username="mona")
    researcher = page_factory("en-US")
    researcher.goto(f"{base}/accounts/login/?next=/console/{study.slug}/dashboard/")
    researcher.get_by_label("Username").fill("mona")
    researcher.get_by_label("Password").fill("pw-mona")
    researcher.get_by_role("button", name="Sign in").click()
    researcher.get_by_role("heading", name="Dashboard", exact=True).wait_for()
    heatmap = researcher.locator("svg[aria-labelledby='compliance-heatmap-title']")
    completed = f"{participant.code}, baseline: Completed"
    assert heatmap.locator("title", has_text=completed).count() == 1
    researcher.get_by_role("navigation", name="Study pages").get_by_role(
        "link", name="Participants"
    ).click()
    researcher.get_by_role("heading", name="Participants", exact=True).wait_for()
    assert researcher.get_by_role("row", name=re.compile(participant.code)).count() == 1
    # and the invitation's history has every step the participant took
    invitation.refresh_from_db()
    assert invitation.status == "completed"
    events = [name for name, _at in invitation.timeline()]
    for event in ("sent", "opened", "started", "completed"):
        assert event in events
