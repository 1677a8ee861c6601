"""Researcher sign-up, email verification and the console's "verify your email" page."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from studyplatform.accounts.selectors import email_is_verified
from studyplatform.core.models import AuditEvent

pytestmark = pytest.mark.django_db

FORM = {"password1": "a long passphrase 42", "password2": "a long passphrase 42"}


def _verify_link(body: str) -> str:
    return re.search(r"http\S+(/accounts/verify-email/\S+/)", body).group(1)


def test_a_researcher_signs_up_confirms_the_address_and_lands_in_an_empty_console(client):
    # when: nadia signs up
    response = client.post(
        "/accounts/signup/", {"username": "nadia", "email": "nadia@example.org", **FORM}
    )
    # then: "check your email", an unverified account, a verification email
    assert response.status_code == 302 and response["Location"] == "/accounts/signup/done/"
    user = get_user_model().objects.get(username="nadia")
    assert not user.is_staff and not user.is_superuser and not email_is_verified(user)
    assert AuditEvent.objects.filter(action="account.signup", actor=user).exists()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["nadia@example.org"]
    # when: she signs in before confirming, the console asks her to verify
    client.force_login(user)
    page = client.get("/console/").content.decode()
    assert "Verify your email address" in page and "nadia@example.org" in page
    # when: she opens the link (GET changes nothing) and confirms
    link = _verify_link(mail.outbox[0].body)
    shown = client.get(link).content.decode()
    assert "Confirm my address" in shown
    user.refresh_from_db()
    assert not email_is_verified(user)
    confirmed = client.post(link)
    # then: verified, and the console is the ordinary (empty) study list
    assert confirmed.status_code == 302 and confirmed["Location"] == "/console/"
    user = get_user_model().objects.get(username="nadia")
    assert email_is_verified(user)
    assert "Verify your email address" not in client.get("/console/").content.decode()


def test_a_forged_or_stale_verification_link_is_refused(client, make_user):
    user = make_user("vera", verified=False)
    response = client.get("/accounts/verify-email/not-a-token/")
    assert response.status_code == 400
    assert "This link is not valid" in response.content.decode()
    assert not email_is_verified(user)


def test_a_verification_link_stops_working_when_the_address_changes(client, make_user):
    from studyplatform.accounts.services import verification_token

    user = make_user("vic", verified=False)
    token = verification_token(user)
    user.email = "other@example.org"
    user.save()
    response = client.post(f"/accounts/verify-email/{token}/")
    assert response.status_code == 400
    user.refresh_from_db()
    assert not email_is_verified(user)


def test_resending_the_link_is_capped_per_address(client, make_user, settings):
    settings.ACCOUNT_EMAIL_LIMIT = 2
    user = make_user("ria", verified=False)
    client.force_login(user)
    for _ in range(4):
        client.post("/accounts/verify-email/resend/")
    assert len(mail.outbox) == 2
    page = client.get("/console/").content.decode()
    assert "Too many emails to this address in the last hour" in page


def test_sign_up_refuses_a_taken_username(client, make_user):
    make_user("omar")
    response = client.post(
        "/accounts/signup/", {"username": "omar", "email": "new@example.org", **FORM}
    )
    assert response.status_code == 400
    assert "A user with that username already exists." in response.content.decode()
    assert not mail.outbox


def test_a_superuser_counts_as_verified(django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.org", "pw-root-1234")
    assert email_is_verified(root)


def test_a_platform_admin_can_vouch_for_an_address(client, make_user, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.org", "pw-root-1234")
    nina = make_user("nina", verified=False)
    client.force_login(root)
    client.post(
        "/admin/auth/user/", {"action": "mark_email_verified", "_selected_action": [nina.pk]}
    )
    nina = get_user_model().objects.get(pk=nina.pk)
    assert email_is_verified(nina) and nina.email_verification.method == "admin"
    assert AuditEvent.objects.filter(action="account.email_verified", actor=root).exists()
