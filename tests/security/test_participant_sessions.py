"""Issue 12, participant sessions: a panel id never opens a participant's data, panel ids stay out
of URLs and access logs, passwords need proof, the consent form does not reveal who takes part,
and nobody can lock a participant out of email sign-in."""

from __future__ import annotations

import copy
import json
import logging
import logging.config
import re

import pytest
from django.contrib.auth.hashers import check_password, make_password
from django.core import mail

from studyplatform.chat.services import conversation_create
from studyplatform.participants.models import DataDownload, Identity, Participant
from studyplatform.participants.services import JoinContext
from studyplatform.participants.session import SESSION_KEY

pytestmark = pytest.mark.django_db

PID = "5f9a77c0ffee"
CONSENT = {
    "c_agree": "on",
    "c_adult": "on",
    "c_share_chats": "on",
    "signature_name": "Rui Lima",
    "timezone": "Europe/Lisbon",
}
SCREENER = {"age": "34", "uses_chatbots": "yes", "gender": "man"}


def login(client, participant):
    """A signed session, as a browser keeps it; no recent one-time sign-in."""
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


@pytest.fixture
def client_factory():
    """Separate browsers (each its own cookie jar)."""
    from django.test import Client

    return Client


def without_csrf(html: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", html)


@pytest.fixture
def panel_participant(recruiting_study, enroll, django_capture_on_commit_callbacks):
    """A Prolific participant with a chat, a ready data download and a typed-name consent."""
    participant = enroll(
        recruiting_study,
        email="ana@example.org",
        join=JoinContext(panel="prolific", panel_pid=PID, panel_study_id="S1"),
    )
    conversation_create(participant=participant)
    with django_capture_on_commit_callbacks(execute=True):
        DataDownload.objects.create(participant=participant)
    DataDownload.objects.update(status=DataDownload.Status.READY)
    return participant


def test_a_panel_id_alone_opens_none_of_the_participants_pages(client, panel_participant):
    # given: a stranger (e.g. a researcher from another study) who knows the panel id
    study = panel_participant.study
    conversation = panel_participant.conversations.get()
    download = panel_participant.downloads.get()
    # when: they open the study link with it, then try every page of the participant
    landing = client.get(f"/s/{study.slug}/?PROLIFIC_PID={PID}", follow=True)
    # then: no session, and every page sends them to sign in
    assert SESSION_KEY not in client.session
    assert panel_participant.code.encode() not in landing.content
    attempts = [
        client.get("/p/"),
        client.get("/p/chat/"),
        client.get(f"/p/chat/c/{conversation.pk}/"),
        client.get("/p/consent/?download=1"),
        client.get("/p/data/"),
        client.get(f"/p/data/{download.pk}/file/"),
        client.get("/p/password/"),
        client.post("/p/password/", {"password": "attacker pw 1", "confirm": "attacker pw 1"}),
        client.get("/p/withdraw/"),
        client.post("/p/withdraw/", {"mode": "delete", "confirm": "on"}),
    ]
    for response in attempts:
        assert response.status_code == 302, response
        assert response["Location"].startswith("/p/signin/")
    panel_participant.refresh_from_db()
    assert panel_participant.status == "active" and panel_participant.password_hash == ""
    assert Identity.objects.filter(participant=panel_participant).exists()


def test_a_panel_id_alone_gets_a_page_saying_how_to_come_back(client, panel_participant):
    study = panel_participant.study
    page = client.get(f"/s/{study.slug}/?PROLIFIC_PID={PID}", follow=True)
    assert page.status_code == 200
    assert b"You have already joined this study" in page.content
    assert b"Rui" not in page.content and b"ana@example.org" not in page.content
    # and enrolling again with the same panel id is still impossible
    client.post(f"/s/{study.slug}/screener/", SCREENER)
    again = client.post(f"/s/{study.slug}/consent/", {**CONSENT, "email": "x@example.org"})
    assert b"You have already joined this study" in again.content
    assert Participant.objects.count() == 1


def test_the_study_link_moves_panel_ids_into_the_session_and_redirects_to_the_clean_url(
    client, recruiting_study
):
    # when: a participant arrives from Prolific
    slug = recruiting_study.slug
    response = client.get(f"/s/{slug}/?PROLIFIC_PID={PID}&STUDY_ID=S1&SESSION_ID=X1")
    # then: the ids are kept in the session and the browser moves on to the bare URL
    assert response.status_code == 302 and response["Location"] == f"/s/{slug}/"
    joined = client.session[f"join:{slug}"]
    assert (joined["panel_pid"], joined["panel_study_id"], joined["panel_session_id"]) == (
        PID,
        "S1",
        "X1",
    )
    # and the ids travel with the session to enrollment
    client.get(response["Location"])
    client.post(f"/s/{slug}/screener/", SCREENER)
    client.post(f"/s/{slug}/consent/", {**CONSENT, "email": "rui@example.org"})
    identity = Identity.objects.get()
    assert (identity.panel_pid, identity.panel_session_id) == (PID, "X1")


def test_a_password_change_without_the_current_password_is_refused(
    client, recruiting_study, enroll
):
    # given: a participant with a password, and a browser holding their (not fresh) session
    participant = enroll(recruiting_study, email="pw@example.org")
    Participant.objects.filter(pk=participant.pk).update(password_hash=make_password("old pw 123"))
    login(client, participant)
    # when: the session alone, then a wrong current password, try to change it
    bare = client.post("/p/password/", {"password": "new pw 4567", "confirm": "new pw 4567"})
    wrong = client.post(
        "/p/password/", {"current": "guess", "password": "new pw 4567", "confirm": "new pw 4567"}
    )
    # then: both are refused, and the password is unchanged
    assert bare.status_code == 400 and b"Current password" in bare.content
    assert wrong.status_code == 400
    assert b"Your current password is not correct." in wrong.content
    participant.refresh_from_db()
    assert check_password("old pw 123", participant.password_hash)
    # and with the current password it works
    right = client.post(
        "/p/password/",
        {"current": "old pw 123", "password": "new pw 4567", "confirm": "new pw 4567"},
    )
    assert right.status_code == 302
    participant.refresh_from_db()
    assert check_password("new pw 4567", participant.password_hash)


def test_a_first_password_needs_a_fresh_sign_in_by_emailed_link(client, recruiting_study, enroll):
    # given: a participant without a password, in a browser holding an old session
    participant = enroll(recruiting_study, email="first@example.org")
    login(client, participant)
    # when: they try to set one
    refused = client.post("/p/password/", {"password": "new pw 4567", "confirm": "new pw 4567"})
    # then: it is refused; the page offers a one-time link, which comes back to this page
    assert refused.status_code == 200 and b"needs a fresh sign-in" in refused.content
    participant.refresh_from_db()
    assert participant.password_hash == ""
    sent = client.post("/p/password/", {"action": "email_link"})
    assert b"We have emailed you a sign-in link" in sent.content
    [message] = mail.outbox
    assert message.to == ["first@example.org"]
    token = re.search(r"/p/signin/(\S+)/", message.body).group(1)
    back = client.post(f"/p/signin/{token}/")
    assert back["Location"] == "/p/password/"
    # and after that fresh sign-in the password can be set without a current one
    saved = client.post("/p/password/", {"password": "new pw 4567", "confirm": "new pw 4567"})
    assert saved.status_code == 302
    participant.refresh_from_db()
    assert check_password("new pw 4567", participant.password_hash)


def test_consent_with_an_already_joined_email_answers_as_for_a_new_one_and_emails_the_owner(
    client_factory, recruiting_study, enroll
):
    # given: ana@ has already joined
    enroll(recruiting_study, email="ana@example.org")
    slug = recruiting_study.slug
    answers = {}
    for email in ("new@example.org", "ana@example.org"):
        # when: someone submits the consent form with a new and with the joined address
        client = client_factory()
        client.get(f"/s/{slug}/")
        client.post(f"/s/{slug}/screener/", SCREENER)
        mail.outbox.clear()
        response = client.post(f"/s/{slug}/consent/", {**CONSENT, "email": email})
        cookie = response.cookies["sessionid"]
        welcome = client.get(response["Location"])
        answers[email] = (
            (response.status_code, response["Location"], cookie["max-age"], cookie["httponly"]),
            welcome,
            list(mail.outbox),
        )
    new_answer, new_page, new_mail = answers["new@example.org"]
    old_answer, old_page, old_mail = answers["ana@example.org"]
    # then: the same redirect, session cookie and page, with no "already joined" anywhere
    assert new_answer == old_answer
    assert new_answer[:2] == (302, "/p/welcome/")
    assert new_page.status_code == old_page.status_code == 200
    assert without_csrf(new_page.content) == without_csrf(old_page.content)
    assert b"already" not in old_page.content
    # and each address's owner got an email; ana@'s says someone tried to join with it
    assert [m.to for m in new_mail] == [["new@example.org"]]
    [note] = old_mail
    assert note.to == ["ana@example.org"]
    assert "Someone just tried to join" in note.body and "/p/signin/" in note.body
    # and nothing was written for the second attempt
    assert Identity.objects.count() == 2


def test_consent_submissions_are_rate_limited_per_client(
    client_factory, recruiting_study, settings
):
    settings.ENROLLMENT_CLIENT_LIMIT = 1
    slug = recruiting_study.slug
    responses = []
    for email in ("one@example.org", "two@example.org"):
        client = client_factory()  # same client address (127.0.0.1), separate sessions
        client.get(f"/s/{slug}/")
        client.post(f"/s/{slug}/screener/", SCREENER)
        responses.append(client.post(f"/s/{slug}/consent/", {**CONSENT, "email": email}))
    assert responses[0].status_code == 302
    assert responses[1].status_code == 429
    assert b"Too many attempts came from your connection" in responses[1].content
    assert Participant.objects.count() == 1


def test_six_sign_in_requests_by_a_stranger_do_not_stop_the_participant_getting_a_link(
    client_factory, recruiting_study, enroll
):
    # given: a participant, and a stranger who knows their address
    participant = enroll(recruiting_study, email="mia@example.org")
    stranger = client_factory()
    for _ in range(6):
        stranger.post("/p/signin/", {"email": "mia@example.org"}, REMOTE_ADDR="203.0.113.9")
    mail.outbox.clear()
    # when: the participant asks for a link from their own phone
    phone = client_factory()
    answer = phone.post("/p/signin/", {"email": "mia@example.org"}, REMOTE_ADDR="198.51.100.7")
    # then: they get one, and it signs them in
    assert b"Check your email" in answer.content
    [message] = mail.outbox
    token = re.search(r"/p/signin/(\S+)/", message.body).group(1)
    assert phone.post(f"/p/signin/{token}/").status_code == 302
    assert phone.session[SESSION_KEY] == participant.pk


def uvicorn_access_record(path: str) -> logging.LogRecord:
    """A record exactly as uvicorn's HTTP protocols log a request."""
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("203.0.113.9:5123", "GET", path, "1.1", 302),
        None,
    )


def test_the_uvicorn_access_filter_strips_query_strings_and_link_secrets():
    from uvicorn.logging import AccessFormatter

    from studyplatform.core.access_log import AccessLogRedactor

    formatter = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s')
    redactor = AccessLogRedactor()
    lines = []
    for path in (
        f"/s/companion-rct/?PROLIFIC_PID={PID}&STUDY_ID=S1&SESSION_ID=X1",
        "/s/companion-rct/?pilot=secret-pilot-token",
        "/p/r/long-return-secret/",
        "/p/signin/signed.token-value/",
        "/p/signin/password/",
    ):
        record = uvicorn_access_record(path)
        assert redactor.filter(record) is True
        lines.append(formatter.format(record))
    assert lines == [
        '203.0.113.9:5123 - "GET /s/companion-rct/ HTTP/1.1" 302 Found',
        '203.0.113.9:5123 - "GET /s/companion-rct/ HTTP/1.1" 302 Found',
        '203.0.113.9:5123 - "GET /p/r/[redacted]/ HTTP/1.1" 302 Found',
        '203.0.113.9:5123 - "GET /p/signin/[redacted]/ HTTP/1.1" 302 Found',
        '203.0.113.9:5123 - "GET /p/signin/password/ HTTP/1.1" 302 Found',
    ]


def test_the_uvicorn_log_config_used_by_make_run_installs_the_filter():
    from studyplatform.core.access_log import AccessLogRedactor
    from studyplatform.launcher import ROOT

    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg.filters[:], lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    access = loggers[-1]
    captured: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            captured.append(record.getMessage())

    try:
        config = json.loads((ROOT / "studyplatform" / "uvicorn_logging.json").read_text())
        logging.config.dictConfig(copy.deepcopy(config))
        assert any(isinstance(f, AccessLogRedactor) for f in access.filters)
        access.handlers[:] = [Keep()]
        access.handle(uvicorn_access_record(f"/s/x/?PROLIFIC_PID={PID}"))
    finally:
        for lg, (filters, handlers, propagate, level) in zip(loggers, saved, strict=True):
            lg.filters[:], lg.handlers[:], lg.propagate = filters, handlers, propagate
            lg.setLevel(level)
    assert captured == ['203.0.113.9:5123 - "GET /s/x/ HTTP/1.1" 302']


def test_django_s_request_log_never_keeps_a_link_secret(caplog):
    # given: Django's request logger, configured by settings.LOGGING, and an error response on a
    # return link (Django logs the path of every 4xx/5xx response)
    from django.http import HttpResponseNotFound
    from django.test import RequestFactory
    from django.utils.log import log_response

    secret = "a-return-link-secret-that-must-not-be-logged"
    request = RequestFactory().get(f"/p/r/{secret}/")
    # when: the error is logged the way Django's handlers log it
    with caplog.at_level("WARNING", logger="django.request"):
        log_response(
            "%s: %s", "Not Found", request.path, response=HttpResponseNotFound(), request=request
        )
    # then: the line is there, without the secret
    assert [record.getMessage() for record in caplog.records] == ["Not Found: /p/r/[redacted]/"]
