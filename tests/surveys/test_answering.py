"""Participants answering questionnaires: the emailed link, one page per instrument, saving for
later, submitting with per-item errors, scores, completion, closed windows, safety flags, the
home page's "What's due" list, and wording fallbacks."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.utils import timezone
from surveys_custom_instrument import custom_definition

from studyplatform.participants.session import SESSION_KEY
from studyplatform.safety.models import SafetyAlert
from studyplatform.studies.services import study_create_from_protocol
from surveys.engine import schedule_tick
from surveys.forms import InstrumentForm, shown_instrument
from surveys.instruments import get_instrument, load_instrument_dict
from surveys.models import Invitation, Response
from tests.factories import launch_study

pytestmark = pytest.mark.django_db

WHO5_ALL_3 = {f"who5_{i}": "3" for i in range(1, 6)}
UCLA3_ALL_1 = {f"ucla3_{i}": "1" for i in range(1, 4)}
PHQ9_ALL_0 = {f"phq9_{i}": "0" for i in range(1, 10)}


@pytest.fixture(autouse=True)
def _fresh_schedule_cache():
    # surveys.engine caches schedule entries by protocol-version id; SQLite reuses ids after a
    # test's rollback, so a previous test's schedule would otherwise leak into this one.
    from surveys.engine import _entries

    _entries.cache_clear()
    yield
    _entries.cache_clear()


def sign_in(client, participant) -> None:
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def send_baseline(capture, now: dt.datetime | None = None) -> None:
    # The tick queues emails on commit; running the callbacks sends them (eager Celery).
    with capture(execute=True):
        schedule_tick(now=now or timezone.now())


@pytest.fixture
def invited(recruiting_study, enroll, django_capture_on_commit_callbacks, client):
    """A signed-in participant whose baseline invitation (who5, ucla3, phq9) was sent."""
    participant = enroll(recruiting_study)
    send_baseline(django_capture_on_commit_callbacks)
    invitation = Invitation.objects.get(participant=participant, entry_key="baseline")
    sign_in(client, participant)
    return participant, invitation


def page_url(invitation: Invitation, key: str = "") -> str:
    return f"/p/surveys/{invitation.pk}/" + (f"{key}/" if key else "")


def post(client, invitation, key, answers, action):
    return client.post(page_url(invitation, key), {**answers, "action": action})


def fieldset(html: str, item_id: str) -> str:
    return re.search(rf'<fieldset[^>]*id="item-{item_id}".*?</fieldset>', html, re.S).group(0)


def test_the_emailed_link_signs_in_and_opens_the_first_questionnaire(
    recruiting_study, enroll, django_capture_on_commit_callbacks, client
):
    # given: an enrolled participant and a beat tick that sends the baseline invitation
    participant = enroll(recruiting_study, email="rosa@example.org")
    send_baseline(django_capture_on_commit_callbacks)
    invitation = Invitation.objects.get(participant=participant, entry_key="baseline")
    assert invitation.status == "sent"
    link = re.search(r"http://\S+/p/signin/\S+/", mail.outbox[-1].body).group(0)
    path = link.split("://", 1)[1].split("/", 1)[1]

    # when: the participant follows the link and confirms
    client.get("/" + path)
    response = client.post("/" + path, follow=True)

    # then: the survey opened on WHO-5, page 1 of 3
    assert response.redirect_chain[0][0] == page_url(invitation)
    assert response.redirect_chain[-1][0] == page_url(invitation, "who5")
    html = response.content.decode()
    assert "Questionnaire 1 of 3" in html
    assert "WHO-5 Well-Being Index" in html
    assert "I have felt cheerful and in good spirits" in html
    assert 'type="radio"' in html and "All of the time" in html
    invitation.refresh_from_db()
    assert invitation.status == "opened" and invitation.opened_at is not None


def test_a_partial_save_is_kept_and_prefilled_when_the_participant_returns(invited, client):
    # given: a participant on the WHO-5 page
    _, invitation = invited

    # when: they answer two items and save for later
    response = post(client, invitation, "who5", {"who5_1": "4", "who5_2": "0"}, "save")

    # then: they go home, the draft holds the typed answers, and the page shows them again
    assert response.status_code == 302 and response["Location"] == "/p/"
    draft = Response.objects.get(invitation=invitation, instrument_key="who5")
    assert draft.status == "draft" and draft.answers == {"who5_1": 4, "who5_2": 0}
    invitation.refresh_from_db()
    assert invitation.status == "started"
    html = client.get(page_url(invitation, "who5")).content.decode()
    assert re.search(r'value="4"[^>]*checked', fieldset(html, "who5_1"))
    assert re.search(r'value="0"[^>]*checked', fieldset(html, "who5_2"))
    assert "checked" not in fieldset(html, "who5_3")
    # and "What's due" offers to continue
    home = client.get("/p/").content.decode()
    assert "Continue answering" in home and page_url(invitation) in home


def test_submitting_all_three_questionnaires_scores_them_and_completes_the_invitation(
    invited, client
):
    _, invitation = invited

    # when: WHO-5, UCLA-3 and PHQ-9 are submitted in turn
    r1 = post(client, invitation, "who5", WHO5_ALL_3, "submit")
    r2 = post(client, invitation, "ucla3", UCLA3_ALL_1, "submit")
    r3 = post(client, invitation, "phq9", PHQ9_ALL_0, "submit")

    # then: each page leads to the next, then to the thank-you page
    assert r1["Location"] == page_url(invitation) and r2["Location"] == page_url(invitation)
    assert r3["Location"] == page_url(invitation, "thanks")
    who5 = Response.objects.get(invitation=invitation, instrument_key="who5")
    assert who5.status == "submitted" and who5.valid
    assert who5.scores == {"raw": 15, "percentage": 60}
    assert who5.bands == {"percentage": "above_cutoff"}
    assert Response.objects.get(instrument_key="ucla3").scores == {"total": 3}
    invitation.refresh_from_db()
    assert invitation.status == "completed" and invitation.completed_at is not None
    thanks = client.get(page_url(invitation, "thanks")).content.decode()
    assert "Your answers have been submitted." in thanks
    assert "findahelpline" not in thanks
    assert not SafetyAlert.objects.exists()
    # a completed invitation leaves the home page, and its pages cannot be answered again
    assert "Nothing is due right now." in client.get("/p/").content.decode()
    again = post(client, invitation, "who5", WHO5_ALL_3, "submit")
    assert again["Location"] == page_url(invitation, "thanks")
    assert Response.objects.filter(invitation=invitation).count() == 3


def test_the_second_page_shows_progress_and_a_wording_placeholder_for_withheld_items(
    invited, client
):
    _, invitation = invited
    post(client, invitation, "who5", WHO5_ALL_3, "submit")

    html = client.get(page_url(invitation, "ucla3")).content.decode()

    assert "Questionnaire 2 of 3" in html
    assert "Three-Item Loneliness Scale (UCLA-3)" in html
    # UCLA-3 ships no item wording (licence unclear) and the protocol supplies none
    assert "Question 1" in fieldset(html, "ucla3_1")
    assert "Hardly ever" in html


def test_a_missing_required_answer_is_shown_next_to_its_item_and_nothing_is_saved(invited, client):
    _, invitation = invited
    answers = {k: v for k, v in WHO5_ALL_3.items() if k != "who5_5"}

    response = post(client, invitation, "who5", answers, "submit")

    assert response.status_code == 400
    html = response.content.decode()
    assert "This answer is required." in fieldset(html, "who5_5")
    assert "This answer is required." not in fieldset(html, "who5_1")
    # the answers given stay on the page
    assert re.search(r'value="3"[^>]*checked', fieldset(html, "who5_1"))
    assert not Response.objects.exists()


def test_an_answer_outside_the_options_is_refused_and_nothing_is_saved(invited, client):
    _, invitation = invited

    response = post(client, invitation, "who5", {**WHO5_ALL_3, "who5_2": "9"}, "save")

    assert response.status_code == 400
    assert "Select a valid choice. 9 is not one of the available choices." in fieldset(
        response.content.decode(), "who5_2"
    )
    assert not Response.objects.exists()


def test_an_out_of_range_number_gets_the_services_reason_and_nothing_is_saved(
    rct_doc, owner, enroll, django_capture_on_commit_callbacks, client
):
    # given: a study whose baseline is a researcher's custom instrument with a 0-24 number
    rct_doc["surveys"]["instruments"] = [custom_definition()]
    baseline = rct_doc["surveys"]["schedule"][0]
    baseline["instruments"] = ["custom_mix", *baseline["instruments"]]
    study = study_create_from_protocol(doc=rct_doc, author=owner)
    study = launch_study(study, owner)
    participant = enroll(study)
    send_baseline(django_capture_on_commit_callbacks)
    invitation = Invitation.objects.get(participant=participant, entry_key="baseline")
    sign_in(client, participant)

    # when: 25 hours of sleep are reported
    response = post(client, invitation, "custom_mix", {"q1": "3", "hours": "25"}, "save")

    # then: the service's reason appears next to that item
    assert response.status_code == 400
    assert "Please check this answer: 25 is above the maximum 24." in fieldset(
        response.content.decode(), "hours"
    )
    assert not Response.objects.exists()


def test_a_closed_invitation_is_refused_politely(
    recruiting_study, enroll, django_capture_on_commit_callbacks, client
):
    # given: the baseline window (72 h) has passed and a tick expired the invitation
    participant = enroll(recruiting_study)
    send_baseline(django_capture_on_commit_callbacks)
    schedule_tick(now=timezone.now() + dt.timedelta(hours=73))
    invitation = Invitation.objects.get(participant=participant, entry_key="baseline")
    assert invitation.status == "expired"
    sign_in(client, participant)

    start = client.get(page_url(invitation))
    submit = post(client, invitation, "who5", WHO5_ALL_3, "submit")

    assert start.status_code == 410 and submit.status_code == 410
    assert "This questionnaire is closed" in start.content.decode()
    assert not Response.objects.exists()
    assert "Nothing is due right now." in client.get("/p/").content.decode()


def test_phq9_item_9_raises_a_safety_alert_and_the_thank_you_page_shows_crisis_resources(
    invited, client
):
    participant, invitation = invited
    post(client, invitation, "who5", WHO5_ALL_3, "submit")
    post(client, invitation, "ucla3", UCLA3_ALL_1, "submit")

    response = post(client, invitation, "phq9", {**PHQ9_ALL_0, "phq9_9": "1"}, "submit")

    assert response["Location"] == page_url(invitation, "thanks")
    alert = SafetyAlert.objects.get()
    assert alert.source == "survey" and alert.participant == participant
    assert alert.severity == "high"
    phq9 = Response.objects.get(instrument_key="phq9")
    assert "safety:self_harm" in phq9.flags and "protocol:phq9_9" in phq9.flags
    html = client.get(page_url(invitation, "thanks")).content.decode()
    assert "Support is available" in html
    support = re.search(r'<section class="warning".*?</section>', html, re.S).group(0)
    assert "<p>If you are thinking about harming yourself" in support  # rendered as Markdown
    assert "https://findahelpline.com" in support


def test_crisis_resources_are_shown_in_the_participants_language(
    recruiting_study, enroll, django_capture_on_commit_callbacks, client
):
    participant = enroll(recruiting_study, language="pt-br")
    send_baseline(django_capture_on_commit_callbacks)
    invitation = Invitation.objects.get(participant=participant, entry_key="baseline")
    sign_in(client, participant)
    post(client, invitation, "who5", WHO5_ALL_3, "submit")
    post(client, invitation, "ucla3", UCLA3_ALL_1, "submit")
    post(client, invitation, "phq9", {**PHQ9_ALL_0, "phq9_9": "2"}, "submit")

    html = client.get(page_url(invitation, "thanks")).content.decode()

    assert "CVV no 188" in html and "findahelpline" not in html


def test_another_participants_invitation_is_404_on_every_page(
    invited, recruiting_study, enroll, client
):
    # given: a second participant signed in, and the first participant's invitation
    _, invitation = invited
    other = enroll(recruiting_study)
    sign_in(client, other)

    # then: none of the pages reveal or touch it
    assert client.get(page_url(invitation)).status_code == 404
    assert client.get(page_url(invitation, "who5")).status_code == 404
    assert post(client, invitation, "who5", WHO5_ALL_3, "save").status_code == 404
    assert client.get(page_url(invitation, "thanks")).status_code == 404
    invitation.refresh_from_db()
    assert invitation.status == "sent" and not Response.objects.exists()


def test_signed_out_visitors_are_sent_to_sign_in(invited, client):
    _, invitation = invited
    client.logout()

    response = client.get(page_url(invitation, "who5"))

    assert response.status_code == 302
    assert response["Location"].startswith("/p/signin/?next=")


def test_home_lists_what_is_due_with_its_deadline_and_an_answer_link(invited, client):
    _, invitation = invited

    html = client.get("/p/").content.decode()

    assert "Nothing is due right now." not in html
    assert f'href="{page_url(invitation)}"' in html
    assert "A questionnaire (3 parts), open until" in html
    assert ">Answer<" in html


def test_home_says_nothing_is_due_before_any_invitation(recruiting_study, enroll, client):
    participant = enroll(recruiting_study)
    sign_in(client, participant)

    assert "Nothing is due right now." in client.get("/p/").content.decode()


# --- wording and typed answers (no database) --------------------------------------------------


@pytest.mark.django_db(False)
def test_protocol_wording_is_used_where_the_instrument_ships_none_for_the_language():
    protocol = {
        "surveys": {
            "translations": {
                "who5": {
                    "pt-br": {
                        "instructions": "Instruções de teste",
                        "items": {"who5_1": "Texto de teste 1"},
                        "options": {"5": "Rótulo de teste 5"},
                    }
                }
            }
        }
    }

    shown = shown_instrument(get_instrument("who5"), language="pt-br", protocol=protocol)
    english = shown_instrument(get_instrument("who5"), language="en", protocol=protocol)

    # the instrument's own pt-BR title wins; supplied wording fills the gaps; English otherwise
    assert shown.title == "Índice de Bem-Estar da OMS (WHO-5)"
    assert shown.instructions == "Instruções de teste"
    assert shown.items[0].text == "Texto de teste 1"
    assert shown.items[1].text == "I have felt calm and relaxed"
    assert shown.items[0].options[0].label == "Rótulo de teste 5"
    assert shown.items[0].options[1].label == "Most of the time"
    assert english.items[0].text == "I have felt cheerful and in good spirits"


@pytest.mark.django_db(False)
def test_posted_strings_become_answers_of_each_items_type():
    instrument = load_instrument_dict(custom_definition())
    shown = shown_instrument(instrument, language="en", protocol={})
    form = InstrumentForm(
        {
            "q1": "3",
            "attn": "red",
            "hours": "7.5",
            "stress": "40",
            "apps": ["claude", "other"],
            "comment": "  fine  ",
            "q2": "",
        },
        shown=shown,
    )

    assert form.is_valid(), form.errors
    assert form.answers() == {
        "q1": 3,
        "attn": "red",
        "hours": 7.5,
        "stress": 40,
        "apps": ["claude", "other"],
        "comment": "fine",
    }
    assert type(form.answers()["stress"]) is int
    html = str(form["stress"])
    assert 'type="range"' in html and 'min="0"' in html and 'max="100"' in html
    assert 'type="checkbox"' in str(form["apps"])
    assert "<textarea" in str(form["comment"]) and 'maxlength="20"' in str(form["comment"])
