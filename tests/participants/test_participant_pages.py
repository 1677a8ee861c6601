"""The participant journey through the pages, sign-in links, and object-level isolation."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.utils import timezone

from studyplatform.core.models import AuditEvent
from studyplatform.participants.models import (
    DataDownload,
    FunnelCount,
    Identity,
    Participant,
    SignInLink,
)
from studyplatform.participants.services import signin_link_create
from studyplatform.participants.session import SESSION_KEY, SESSION_STUDY_KEY
from tests.factories import launch_study

pytestmark = pytest.mark.django_db


def login(client, participant):
    session = client.session
    session[SESSION_KEY] = participant.pk
    session.save()


def test_the_join_flow_records_panel_ids_and_lands_on_home(client, recruiting_study):
    slug = recruiting_study.slug
    page = client.get(f"/s/{slug}/?PROLIFIC_PID=abc123&STUDY_ID=st&SESSION_ID=se", follow=True)
    assert page.redirect_chain == [(f"/s/{slug}/", 302)]  # panel ids leave the URL at once
    assert page.status_code == 200 and b"Check if I can take part" in page.content
    screener = client.post(
        f"/s/{slug}/screener/", {"age": "34", "uses_chatbots": "yes", "gender": "man"}
    )
    assert screener.status_code == 302 and screener["Location"] == f"/s/{slug}/consent/"
    consent = client.post(
        f"/s/{slug}/consent/",
        {
            "c_agree": "on",
            "c_adult": "on",
            "c_share_chats": "on",
            "signature_name": "Rui Lima",
            "email": "rui@example.org",
            "timezone": "Europe/Lisbon",
        },
    )
    assert consent.status_code == 302 and consent["Location"] == "/p/welcome/"
    participant = Participant.objects.get()
    assert participant.timezone == "Europe/Lisbon"
    assert participant.screener_answers == {"age": 34, "uses_chatbots": True, "gender": "man"}
    assert Identity.objects.get().panel_pid == "abc123"
    home = client.get("/p/")
    assert home.status_code == 200 and participant.code.encode() in home.content
    stages = dict(FunnelCount.objects.values_list("stage", "count"))
    assert stages == {"visited": 1, "screened": 1, "eligible": 1, "consented": 1}


def test_a_returning_panel_id_resumes_in_the_browser_that_holds_the_session(
    client, recruiting_study, enroll
):
    from studyplatform.participants.services import JoinContext

    # given: a participant who joined from Prolific and is still signed in in this browser
    p = enroll(recruiting_study, join=JoinContext(panel="prolific", panel_pid="again-1"))
    login(client, p)
    # when: they open the Prolific study link again
    response = client.get(f"/s/{recruiting_study.slug}/?PROLIFIC_PID=again-1", follow=True)
    # then: they land on their page, and nobody is enrolled twice
    assert response.redirect_chain == [(f"/s/{recruiting_study.slug}/", 302), ("/p/", 302)]
    assert client.session[SESSION_KEY] == p.pk
    assert Participant.objects.count() == 1


def test_a_returning_panel_id_elsewhere_is_told_how_to_come_back(client, recruiting_study, enroll):
    from studyplatform.participants.services import JoinContext

    # given: a participant who joined from Prolific with an email address
    p = enroll(recruiting_study, join=JoinContext(panel="prolific", panel_pid="again-2"))
    # when: a browser without their session opens the study link with their panel id
    response = client.get(f"/s/{recruiting_study.slug}/?PROLIFIC_PID=again-2", follow=True)
    # then: a page explains how to come back; no session, no code, no way to enroll twice
    assert response.status_code == 200
    assert b"You have already joined this study" in response.content
    assert b"Email me a sign-in link" in response.content
    assert p.code.encode() not in response.content
    assert b"Check if I can take part" not in response.content
    assert SESSION_KEY not in client.session
    assert Participant.objects.count() == 1


def test_an_ineligible_person_leaves_only_anonymous_counts(client, recruiting_study):
    slug = recruiting_study.slug
    client.get(f"/s/{slug}/")
    response = client.post(
        f"/s/{slug}/screener/", {"age": "16", "uses_chatbots": "no", "gender": "woman"}
    )
    assert response.status_code == 200
    assert b"This study is for adults only." in response.content
    assert Participant.objects.count() == 0 and Identity.objects.count() == 0
    assert "screener:companion-rct" not in client.session
    stages = dict(FunnelCount.objects.values_list("stage", "count"))
    assert stages == {
        "visited": 1,
        "screened": 1,
        "ineligible:adult": 1,
        "ineligible:chatbot_user": 1,
    }


def test_a_closed_study_says_so_politely(client, recruiting_study, owner):
    from studyplatform.studies.services import study_transition

    study_transition(study=recruiting_study, to="closed", actor=owner)
    page = client.get(f"/s/{recruiting_study.slug}/")
    assert b"This study is not accepting new participants." in page.content
    assert client.get(f"/s/{recruiting_study.slug}/screener/").status_code == 302


def test_a_draft_study_has_no_public_page(client, study):
    assert client.get(f"/s/{study.slug}/").status_code == 404


def test_sign_in_by_emailed_link_works_once(client, recruiting_study, enroll):
    p = enroll(recruiting_study, email="mia@example.org")
    response = client.post("/p/signin/", {"email": "MIA@example.org"})
    assert response.status_code == 200 and b"Check your email" in response.content
    [message] = mail.outbox
    url = re.search(r"http://\S+/p/signin/(\S+)/", message.body)
    token = url.group(1)
    # a GET (mail scanners prefetch links) does not use the link up
    assert client.get(f"/p/signin/{token}/").status_code == 200
    assert client.post(f"/p/signin/{token}/").status_code == 302
    assert client.session[SESSION_KEY] == p.pk
    assert client.session[SESSION_STUDY_KEY] == p.study_id  # the chat send's Redis keys
    client.post("/p/signout/")
    reused = client.post(f"/p/signin/{token}/")
    assert reused.status_code == 400
    assert b"already been used" in reused.content
    assert SESSION_KEY not in client.session


def test_an_expired_sign_in_link_is_refused(client, recruiting_study, enroll):
    p = enroll(recruiting_study)
    token = signin_link_create(participant=p)
    SignInLink.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = client.post(f"/p/signin/{token}/")
    assert response.status_code == 400 and b"not valid" in response.content


def test_a_tampered_sign_in_link_is_refused(client, recruiting_study, enroll):
    token = signin_link_create(participant=enroll(recruiting_study))
    response = client.post(f"/p/signin/{token[:-2]}xx/")
    assert response.status_code == 400 and b"not valid" in response.content


def test_sign_in_emails_are_capped_per_address_without_revealing_accounts(
    client, recruiting_study, enroll, settings
):
    # given: a cap of two sign-in emails per address and client an hour
    settings.SIGNIN_EMAIL_LIMIT = 2
    enroll(recruiting_study, email="known@example.org")
    # when: one client asks four times for a known and for an unknown address
    answers = [client.post("/p/signin/", {"email": e}) for e in ["known@example.org"] * 4]
    answers += [client.post("/p/signin/", {"email": e}) for e in ["nobody@example.org"] * 4]
    # then: every answer is the same, and the known address got only two emails
    assert all(b"Check your email" in a.content for a in answers)
    assert [m.to for m in mail.outbox] == [["known@example.org"]] * 2


def test_sign_in_requests_are_limited_per_client(client, settings):
    settings.SIGNIN_CLIENT_LIMIT = 2
    for address in ("a@example.org", "b@example.org"):
        assert b"Check your email" in client.post("/p/signin/", {"email": address}).content
    limited = client.post("/p/signin/", {"email": "c@example.org"})
    assert b"Too many requests" in limited.content


def test_a_password_can_be_set_and_used(client, recruiting_study, enroll):
    p = enroll(recruiting_study, email="pw@example.org")
    client.post(f"/p/signin/{signin_link_create(participant=p)}/")  # a fresh one-time sign-in
    saved = client.post("/p/password/", {"password": "long enough pw", "confirm": "long enough pw"})
    assert saved.status_code == 302
    client.post("/p/signout/")
    wrong = client.post(
        "/p/signin/password/", {"pw-email": "pw@example.org", "pw-password": "nope"}
    )
    assert wrong.status_code == 400
    right = client.post(
        "/p/signin/password/", {"pw-email": "pw@example.org", "pw-password": "long enough pw"}
    )
    assert right.status_code == 302 and client.session[SESSION_KEY] == p.pk


def test_without_email_the_participant_gets_a_revocable_return_link(client, owner, rct_doc):
    import copy

    from studyplatform.studies.services import study_create_from_protocol

    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "no-email"
    doc["study"]["recruitment"] = {"panel": "prolific", "collect_email": False}
    study = study_create_from_protocol(doc=doc, author=owner)
    study = launch_study(study, owner)
    client.post(
        f"/s/{study.slug}/screener/", {"age": "40", "uses_chatbots": "yes", "gender": "other"}
    )
    client.post(
        f"/s/{study.slug}/consent/", {"c_agree": "on", "c_adult": "on", "signature_name": "X"}
    )
    welcome = client.get("/p/welcome/")
    link = re.search(rb"http://testserver(/p/r/[^<\s]+/)", welcome.content).group(1).decode()
    assert Identity.objects.get().email == ""
    client.post("/p/signout/")
    assert client.get(link).status_code == 302
    client.post("/p/return-link/")  # a new link revokes the old one
    client.post("/p/signout/")
    assert client.get(link).status_code == 404


def test_a_panel_study_without_email_shows_the_return_link_once_and_keeps_only_its_digest(
    client, owner, rct_doc
):
    import copy

    from django.test import Client

    from studyplatform.core.digests import token_digest
    from studyplatform.studies.services import study_create_from_protocol

    # given: a Prolific study that collects no email
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "prolific-no-email"
    doc["study"]["recruitment"] = {"panel": "prolific", "collect_email": False}
    study = study_create_from_protocol(doc=doc, author=owner)
    study = launch_study(study, owner)
    # when: a participant joins from Prolific
    client.get(f"/s/{study.slug}/?PROLIFIC_PID=pp-77&STUDY_ID=S&SESSION_ID=X")
    client.post(
        f"/s/{study.slug}/screener/", {"age": "40", "uses_chatbots": "yes", "gender": "other"}
    )
    client.post(
        f"/s/{study.slug}/consent/", {"c_agree": "on", "c_adult": "on", "signature_name": "X"}
    )
    first = client.get("/p/welcome/")
    # then: the link is shown with advice to keep it in the Prolific messages
    token = re.search(rb"http://testserver/p/r/([^<\s/]+)/", first.content).group(1).decode()
    assert b"Prolific messages" in first.content
    assert len(token) >= 32
    # and only its digest is stored, and it is never shown again
    participant = Participant.objects.get()
    assert participant.return_token_digest == token_digest(token) != token
    assert b"/p/r/" not in client.get("/p/welcome/").content
    # and someone else with the panel id is pointed to that link, not let in
    other = Client()
    page = other.get(f"/s/{study.slug}/?PROLIFIC_PID=pp-77", follow=True)
    assert b"open the personal link you were shown when you joined" in page.content
    assert b"Prolific messages" in page.content and SESSION_KEY not in other.session
    # and the link itself signs in
    assert other.get(f"/p/r/{token}/")["Location"] == "/p/"
    assert other.session[SESSION_KEY] == participant.pk


def test_a_new_consent_version_blocks_everything_until_re_consent(
    client, recruiting_study, enroll, owner, rct_doc
):
    import copy

    from studyplatform.studies.services import protocol_version_create

    p = enroll(recruiting_study)
    login(client, p)
    doc = copy.deepcopy(rct_doc)
    doc["consent"]["documents"][0].update(version=2, body="New terms.")
    protocol_version_create(study=recruiting_study, doc=doc, author=owner, change_note="v2")
    assert client.get("/p/")["Location"] == "/p/consent/renew/"
    client.post("/p/consent/renew/", {"c_agree": "on", "c_adult": "on", "signature_name": "Ana"})
    assert client.get("/p/").status_code == 200


def test_the_consent_copy_is_exactly_what_was_signed(client, recruiting_study, enroll):
    p = enroll(recruiting_study)
    login(client, p)
    copy = client.get("/p/consent/?download=1")
    assert copy["Content-Disposition"].startswith('attachment; filename="consent-')
    record = p.consent_records.get()
    assert record.text_hash.encode() in copy.content
    assert b"Ana Souza" in copy.content
    assert b"Safety monitoring" in copy.content


def test_download_my_data_contains_only_their_own_data(
    client, recruiting_study, enroll, django_capture_on_commit_callbacks
):
    import io
    import json
    import zipfile

    me, other = enroll(recruiting_study), enroll(recruiting_study)
    login(client, me)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/p/data/")  # the task runs eagerly once the request commits
    download = DataDownload.objects.get(participant=me)
    assert download.status == "ready"
    response = client.get(f"/p/data/{download.pk}/file/")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    data = json.loads(archive.read("data.json"))
    assert data["participant"][0]["code"] == me.code
    assert data["identity"][0]["email"] == me.identity.email
    assert "allocation" not in data  # the protocol does not disclose the arm
    assert {"consent.csv", "participant.csv", "README.txt"} <= set(archive.namelist())
    assert other.code not in json.dumps(data)


def test_participant_pages_refuse_another_participants_objects(
    client, recruiting_study, enroll, django_capture_on_commit_callbacks
):
    me, other = enroll(recruiting_study), enroll(recruiting_study)
    login(client, other)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/p/data/")
    theirs = DataDownload.objects.get(participant=other)
    login(client, me)
    assert client.get(f"/p/data/{theirs.pk}/file/").status_code == 404


def test_participant_pages_need_a_participant_session(client, recruiting_study, owner):
    # a researcher account is not a participant session
    client.force_login(owner)
    for url in ("/p/", "/p/consent/", "/p/data/", "/p/withdraw/", "/p/password/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/p/signin/")


def test_withdrawal_with_deletion_removes_content_in_one_go(
    client, recruiting_study, enroll, django_capture_on_commit_callbacks
):
    p = enroll(recruiting_study, email="gone@example.org")
    login(client, p)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/p/data/")
    assert DataDownload.objects.get(participant=p).status == "ready"
    response = client.post("/p/withdraw/", {"mode": "delete", "confirm": "on"})
    assert response["Location"] == "/p/withdrawn/"
    p.refresh_from_db()
    assert p.status == "withdrawn" and p.withdrawal_mode == "delete"
    assert p.screener_answers == {}
    assert not Identity.objects.filter(participant=p).exists()
    assert p.consent_records.get().signature_name == ""
    assert not DataDownload.objects.filter(participant=p).exists()
    event = AuditEvent.objects.get(action="participant.withdraw")
    assert event.data["mode"] == "delete" and "gone@example.org" not in str(event.data)
    assert client.get("/p/").status_code == 302  # signed out


def test_withdrawal_keep_mode_keeps_data_and_cannot_be_undone(recruiting_study, enroll):
    from studyplatform.participants.services import WithdrawalError, participant_withdraw

    p = enroll(recruiting_study)
    participant_withdraw(participant=p, mode="keep", by="participant")
    assert Identity.objects.filter(participant=p).exists()
    with pytest.raises(WithdrawalError, match="cannot be changed or undone"):
        participant_withdraw(participant=p, mode="delete", by="participant")


def test_without_email_a_password_needs_a_fresh_visit_through_the_return_link(
    client, recruiting_study
):
    from studyplatform.participants.services import participant_join, return_link_issue

    # given: a participant without an email address, in a browser with an old session
    participant = participant_join(
        study=recruiting_study,
        answers={"age": 30, "uses_chatbots": True, "gender": "woman"},
        language="en",
        timezone_name="UTC",
        choices={"agree": True, "adult": True},
        signature_name="Ana",
        client_key="c",
    ).participant
    login(client, participant)
    # when: they ask for an emailed link to set a password
    answer = client.post("/p/password/", {"action": "email_link"})
    # then: they are told to use their return link, which makes the session fresh
    assert b"Open your personal return link again" in answer.content and mail.outbox == []
    client.get(f"/p/r/{return_link_issue(participant=participant)}/")
    saved = client.post("/p/password/", {"password": "long enough pw", "confirm": "long enough pw"})
    assert saved.status_code == 302
    participant.refresh_from_db()
    assert participant.password_hash
