"""Researcher sign-up."""

import pytest
from django.contrib.auth import get_user_model

from studyplatform.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_a_researcher_can_sign_up_and_lands_in_an_empty_console(client):
    response = client.post(
        "/accounts/signup/",
        {
            "username": "nadia",
            "email": "nadia@example.org",
            "password1": "a long passphrase 42",
            "password2": "a long passphrase 42",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/console/"
    user = get_user_model().objects.get(username="nadia")
    assert not user.is_staff and not user.is_superuser
    assert AuditEvent.objects.filter(action="account.signup", actor=user).exists()
    console = client.get("/console/")
    assert console.status_code == 200


def test_sign_up_refuses_a_taken_email(client, make_user):
    make_user("omar", email="omar@example.org")
    response = client.post(
        "/accounts/signup/",
        {
            "username": "omar2",
            "email": "OMAR@example.org",
            "password1": "a long passphrase 42",
            "password2": "a long passphrase 42",
        },
    )
    assert response.status_code == 200
    assert "An account with this email address exists already." in response.content.decode()
    assert not get_user_model().objects.filter(username="omar2").exists()
