"""Issue 12, researcher accounts: team-invitation hijack (high); login brute force, unlimited
password resets and sign-up account enumeration (medium).

Each test drives the real pages (sign-up, team page, invitation link, the three sign-in forms,
password reset) the way the attacker in the issue did.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from studyplatform.core.models import AuditEvent
from studyplatform.studies.models import Membership, Study
from studyplatform.studies.protocol import to_yaml
from studyplatform.studies.services import MembershipError, membership_add

pytestmark = pytest.mark.django_db

PASSWORD = "a long passphrase 42"
COLLEAGUE = "colleague@uni.example"


def sign_up(client, username: str, email: str):
    return client.post(
        "/accounts/signup/",
        {"username": username, "email": email, "password1": PASSWORD, "password2": PASSWORD},
    )


def invite(client, owner, study, email: str, role: str) -> None:
    client.force_login(owner)
    client.post(f"/console/{study.slug}/team/", {"email": email, "role": role})
    client.logout()


def page(client, url: str) -> str:
    """The page's HTML without its CSRF token (masked differently on every render)."""
    html = client.get(url).content.decode()
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def link_in(message, pattern: str) -> str:
    return re.search(rf"http\S+({pattern}\S+/)", message.body).group(1)


# --- high: team invitations can be hijacked -------------------------------------------------


def test_an_attacker_who_registers_the_colleagues_address_first_gets_no_role(
    recruiting_study, owner, client
):
    # given: an attacker signs up with the colleague's address before the colleague does
    sign_up(client, "mallory", COLLEAGUE)
    mallory = get_user_model().objects.get(username="mallory")
    mail.outbox.clear()  # the verification link went to the colleague's mailbox, not mallory's
    # when: the owner invites that address as safety reviewer
    invite(client, owner, recruiting_study, COLLEAGUE, "safety_reviewer")
    invitation_mail = mail.outbox[-1]
    assert invitation_mail.to == [COLLEAGUE]
    # then: the attacker holds no role, and even with the link (forwarded, guessed) cannot
    # accept it: the address of that account was never verified
    assert not Membership.objects.filter(user=mallory).exists()
    link = link_in(invitation_mail, "/console/invitations/")
    client.force_login(mallory)
    refused = client.post(link)
    assert refused.status_code == 403
    assert not Membership.objects.filter(user=mallory).exists()
    client.logout()
    # when: the real colleague signs up with the address, confirms it, signs in, accepts
    mail.outbox.clear()
    sign_up(client, "carla", COLLEAGUE)
    carla = get_user_model().objects.get(username="carla")
    client.post(link_in(mail.outbox[-1], "/accounts/verify-email/"))
    client.force_login(carla)
    accepted = client.post(link)
    # then: the role is carla's, and nobody else's
    assert accepted.status_code == 302
    assert list(
        Membership.objects.filter(study=recruiting_study, role="safety_reviewer").values_list(
            "user__username", flat=True
        )
    ) == ["carla"]


def test_an_attacker_whose_username_is_the_colleagues_address_gets_no_role(
    recruiting_study, owner, client
):
    # given: an attacker registers username = the colleague's address (own mailbox as email)
    sign_up(client, COLLEAGUE, "mallory@evil.example")
    mallory = get_user_model().objects.get(username=COLLEAGUE)
    # and completes whatever address confirmation the platform asks of them (their own mailbox)
    for message in [m for m in mail.outbox if "/accounts/verify-email/" in m.body]:
        client.post(link_in(message, "/accounts/verify-email/"))
    # when: the owner invites the colleague's address
    invite(client, owner, recruiting_study, COLLEAGUE, "safety_reviewer")
    # then: no role for the attacker, and the invitation went to the address, not to them
    assert not Membership.objects.filter(user=mallory).exists()
    assert mail.outbox[-1].to == [COLLEAGUE]
    client.force_login(mallory)
    assert client.post(link_in(mail.outbox[-1], "/console/invitations/")).status_code == 403
    assert not Membership.objects.filter(user=mallory).exists()


def test_an_unverified_account_cannot_create_a_study_in_the_console_or_the_api(client, rct_doc):
    from rest_framework.test import APIClient

    sign_up(client, "una", "una@example.org")
    una = get_user_model().objects.get(username="una")
    client.force_login(una)
    page = client.post(
        "/console/new/",
        {"source": "template", "template": "companion-rct", "slug": "una-study", "title": "Una"},
    )
    assert page.status_code == 403 and "Verify your email address" in page.content.decode()
    api = APIClient()
    api.force_authenticate(una)
    response = api.post("/api/studies/", {"yaml": to_yaml(rct_doc)}, format="json")
    assert response.status_code == 403
    assert response.data["detail"] == "Verify your email address before creating a study."
    assert not Study.objects.exists()


def test_an_unverified_account_cannot_be_given_a_study_role(study, owner, client):
    sign_up(client, "una", "una@example.org")
    una = get_user_model().objects.get(username="una")
    with pytest.raises(MembershipError, match="has not verified their email address"):
        membership_add(study=study, user=una, role="analyst", actor=owner)
    assert not Membership.objects.filter(user=una).exists()


# --- medium: no brute-force protection on the three sign-in forms ---------------------------

LOGIN_URLS = ["/accounts/login/", "/admin/login/", "/api-auth/login/"]


@pytest.mark.parametrize("url", LOGIN_URLS)
def test_forty_wrong_passwords_lock_the_account_and_the_client(url, client, make_user):
    # given: two staff researchers (staff so that /admin/login/ would accept them)
    make_user("vic", is_staff=True)
    make_user("other", is_staff=True)
    attacker = {"REMOTE_ADDR": "203.0.113.7"}
    # when: 40 wrong passwords for vic from one client
    for i in range(40):
        client.post(url, {"username": "vic", "password": f"guess-{i}"}, **attacker)
    # then: vic's right password is refused, from the attacker's client and from another one
    right = {"username": "vic", "password": "pw-vic"}
    locked = client.post(url, right, **attacker)
    assert locked.status_code == 429
    assert "Too many sign-in attempts" in locked.content.decode()
    assert client.post(url, right, REMOTE_ADDR="198.51.100.20").status_code == 429
    assert "_auth_user_id" not in client.session
    # and: the attacker's client is locked for every account; other clients sign others in
    other = {"username": "other", "password": "pw-other"}
    assert client.post(url, other, **attacker).status_code == 429
    signed_in = client.post(url, other, REMOTE_ADDR="198.51.100.21")
    assert signed_in.status_code == 302
    assert client.session["_auth_user_id"] == str(get_user_model().objects.get(username="other").pk)
    # and: the lockout is audited once, not once per refused attempt
    assert (
        AuditEvent.objects.filter(
            action="account.login_locked", data__username="vic", data__client="203.0.113.7"
        ).count()
        == 1
    )


def test_the_client_address_behind_an_untrusted_peer_ignores_forwarded_for(client, make_user):
    # given: no trusted proxies; an attacker rotates X-Forwarded-For on every attempt
    make_user("vic")
    for i in range(40):
        client.post(
            "/accounts/login/",
            {"username": f"user{i}", "password": "x"},
            REMOTE_ADDR="203.0.113.7",
            HTTP_X_FORWARDED_FOR=f"10.0.{i}.1",
        )
    # then: the socket address is what was counted, so it stays locked
    response = client.post(
        "/accounts/login/",
        {"username": "vic", "password": "pw-vic"},
        REMOTE_ADDR="203.0.113.7",
        HTTP_X_FORWARDED_FOR="10.9.9.9",
    )
    assert response.status_code == 429


# --- medium: password reset without limit ---------------------------------------------------


def test_password_reset_requests_over_the_limit_send_nothing_and_answer_the_same(
    client, make_user, settings
):
    settings.PASSWORD_RESET_EMAIL_LIMIT = 3
    make_user("vic", email="vic@example.org")
    answers = [
        client.post("/accounts/password_reset/", {"email": "vic@example.org"}) for _ in range(8)
    ]
    assert len(mail.outbox) == 3
    assert {(r.status_code, r["Location"]) for r in answers} == {
        (302, "/accounts/password_reset/done/")
    }
    unknown = client.post("/accounts/password_reset/", {"email": "nobody@example.org"})
    assert (unknown.status_code, unknown["Location"]) == (302, "/accounts/password_reset/done/")


def test_password_reset_requests_are_capped_per_client(client, make_user, settings):
    settings.PASSWORD_RESET_CLIENT_LIMIT = 4
    for i in range(8):
        make_user(f"user{i}", email=f"user{i}@example.org")
    for i in range(8):
        client.post("/accounts/password_reset/", {"email": f"user{i}@example.org"})
    assert len(mail.outbox) == 4
    client.post(
        "/accounts/password_reset/", {"email": "user7@example.org"}, REMOTE_ADDR="198.51.100.9"
    )
    assert len(mail.outbox) == 5


# --- medium: sign-up says whether an email has an account -----------------------------------


def test_sign_up_with_a_taken_address_answers_like_a_new_one_and_tells_the_owner(client, make_user):
    # given: omar's verified account
    make_user("omar", email="omar@example.org")
    # when: a stranger signs up with a new address, then with omar's address
    new = sign_up(client, "someone", "someone@example.org")
    taken = sign_up(client, "someone2", "OMAR@example.org")
    # then: the same answer, page for page
    assert (new.status_code, new.get("Location")) == (taken.status_code, taken.get("Location"))
    assert page(client, new["Location"]) == page(client, taken["Location"])
    # and: no second account for omar's address; omar is told by email instead
    assert not get_user_model().objects.filter(username="someone2").exists()
    notice = mail.outbox[-1]
    assert notice.to == ["omar@example.org"]
    assert "Someone tried to create a researcher account with this email address" in notice.body
    assert "/accounts/password_reset/" in notice.body
