"""Researcher API behaviour: create, version, diff, validate, membership."""

from __future__ import annotations

import copy
import re

import pytest
from django.core import mail

from studyplatform.core.models import AuditEvent
from studyplatform.studies.models import Study
from studyplatform.studies.protocol import to_yaml

pytestmark = pytest.mark.django_db


def test_creating_a_study_from_yaml_makes_the_author_owner(make_user, api_as, rct_doc):
    alice = make_user("alice")
    response = api_as(alice).post("/api/studies/", {"yaml": to_yaml(rct_doc)}, format="json")
    assert response.status_code == 201
    assert response.data["slug"] == "companion-rct" and response.data["status"] == "draft"
    study = Study.objects.get(slug="companion-rct")
    assert list(study.memberships.values_list("user__username", "role")) == [("alice", "owner")]


def test_an_invalid_protocol_gets_400_with_located_errors_and_nothing_saved(
    make_user, api_as, rct_doc
):
    del rct_doc["arms"][1]["model"]
    response = api_as(make_user("alice")).post(
        "/api/studies/", {"yaml": to_yaml(rct_doc)}, format="json"
    )
    assert response.status_code == 400
    [error] = response.data["errors"]
    assert error["path"] == "arms[1].model" and error["message"] == "this field is required"
    assert isinstance(error["line"], int)
    assert Study.objects.count() == 0


def test_validate_endpoint_reports_without_saving(make_user, api_as, rct_doc):
    rct_doc["study"]["timezone"] = "Nowhere/Land"
    response = api_as(make_user("alice")).post(
        "/api/protocol/validate/", {"protocol": rct_doc}, format="json"
    )
    assert response.status_code == 200
    assert response.data["valid"] is False
    assert response.data["errors"][0]["path"] == "study.timezone"


def test_put_protocol_creates_a_version_and_diff_shows_the_change(study, owner, api_as, rct_doc):
    client = api_as(owner)
    changed = copy.deepcopy(rct_doc)
    changed["surveys"]["schedule"][1]["rule"]["every_days"] = 14
    response = client.put(
        f"/api/studies/{study.slug}/protocol/",
        {"protocol": changed, "change_note": "every 14 days"},
        format="json",
    )
    assert response.status_code == 201 and response.data["number"] == 2
    diff = client.get(f"/api/studies/{study.slug}/versions/1/diff/2/").data
    assert diff["changes"] == [
        {"path": "surveys.schedule[1].rule.every_days", "change": "changed", "old": 7, "new": 14}
    ]
    assert "-      every_days: 7" in diff["unified"] and "+      every_days: 14" in diff["unified"]


def test_protocol_get_returns_yaml_of_the_current_version(study, owner, api_as):
    data = api_as(owner).get(f"/api/studies/{study.slug}/protocol/").data
    assert data["version"] == 1
    assert data["yaml"].startswith("format: studyplatform/v1\nstudy:\n  slug: companion-rct\n")


def test_members_join_by_invitation_and_role_changes_are_audited(
    study, owner, make_user, api_as, client
):
    # given: an owner invites mo's address through the API
    mo = make_user("mo", email="mo@example.org")
    api = api_as(owner)
    invited = api.post(
        f"/api/studies/{study.slug}/team-invitations/",
        {"email": "MO@example.org", "role": "monitor"},
        format="json",
    )
    assert invited.status_code == 201 and invited.data["status"] == "pending"
    pending = api.get(f"/api/studies/{study.slug}/team-invitations/").data
    assert pending[0]["email"] == "MO@example.org"
    assert not study.memberships.filter(user=mo).exists()
    # when: mo opens the emailed console link while signed in and accepts
    link = re.search(r"http\S+(/console/invitations/\S+/)", mail.outbox[-1].body).group(1)
    client.force_login(mo)
    assert client.post(link).status_code == 302
    # then: mo is a monitor; the last owner cannot be removed; mo can be
    added = study.memberships.get(user=mo)
    assert added.role == "monitor"
    owner_row = study.memberships.get(role="owner")
    refused = api.delete(f"/api/studies/{study.slug}/members/{owner_row.pk}/")
    assert refused.status_code == 409
    assert refused.data["detail"] == "a study must keep at least one owner"
    removed = api.delete(f"/api/studies/{study.slug}/members/{added.pk}/")
    assert removed.status_code == 204
    assert list(
        AuditEvent.objects.filter(action__regex=r"^(membership|invitation)\.")
        .order_by("id")
        .values_list("action", "data")
    ) == [
        ("invitation.create", {"email": "MO@example.org", "role": "monitor"}),
        ("membership.add", {"user": "mo", "role": "monitor"}),
        ("invitation.accept", {"email": "MO@example.org", "role": "monitor"}),
        ("membership.remove", {"user": "mo", "role": "monitor"}),
    ]


def test_members_cannot_be_added_directly_by_username(study, owner, make_user, api_as):
    make_user("mo")
    response = api_as(owner).post(
        f"/api/studies/{study.slug}/members/", {"username": "mo", "role": "monitor"}, format="json"
    )
    assert response.status_code == 405
    assert not study.memberships.filter(user__username="mo").exists()


def test_a_bad_invitation_names_the_field_and_writes_nothing(study, owner, api_as):
    response = api_as(owner).post(
        f"/api/studies/{study.slug}/team-invitations/",
        {"email": "not-an-address", "role": "king"},
        format="json",
    )
    assert response.status_code == 400
    assert response.data["email"] == ["Enter a valid email address."]
    assert response.data["role"] == ['"king" is not a valid choice.']
    assert not study.team_invitations.exists() and not mail.outbox


def test_withdrawing_an_invitation_twice_is_a_conflict(study, owner, api_as):
    api = api_as(owner)
    created = api.post(
        f"/api/studies/{study.slug}/team-invitations/",
        {"email": "x@example.org", "role": "analyst"},
        format="json",
    )
    url = f"/api/studies/{study.slug}/team-invitations/{created.data['id']}/"
    assert api.delete(url).status_code == 204
    again = api.delete(url)
    assert again.status_code == 409
    assert again.data["detail"] == (
        "Only pending invitations can be withdrawn (this one is revoked)."
    )


def test_transition_conflict_explains_allowed_moves(study, owner, api_as):
    response = api_as(owner).post(
        f"/api/studies/{study.slug}/transition/", {"to": "closed"}, format="json"
    )
    assert response.status_code == 409
    assert response.data["detail"] == (
        "a draft study cannot move to closed (allowed from here: piloting)"
    )


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/studies/{slug}/protocol/" in schema.content
    assert client.get("/api/docs/").status_code == 200
