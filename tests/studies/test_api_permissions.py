"""The role matrix: every role against every study endpoint, and strangers from other studies."""

from __future__ import annotations

import copy

import pytest

from studyplatform.studies.models import Membership
from studyplatform.studies.roles import ROLE_PERMISSIONS, Perm, Role
from studyplatform.studies.services import (
    invitation_create,
    study_create_from_protocol,
)
from tests.factories import launch_study

pytestmark = pytest.mark.django_db


def endpoints(study, doc, code="P-NONE"):
    """(method, url, body, permission needed) for every study-scoped endpoint."""
    base = f"/api/studies/{study.slug}"
    changed = copy.deepcopy(doc)
    changed["limits"]["messages_per_minute"] = 3
    owner_membership = Membership.objects.filter(study=study, role="owner").first()
    pending = invitation_create(
        study=study, email="pending@example.org", role="analyst", actor=None
    )
    return [
        ("get", f"{base}/", None, Perm.VIEW_STUDY),
        ("get", f"{base}/arms/", None, Perm.VIEW_PROTOCOL),
        ("get", f"{base}/protocol/", None, Perm.VIEW_PROTOCOL),
        ("put", f"{base}/protocol/", {"protocol": changed, "change_note": "x"}, Perm.EDIT_PROTOCOL),
        ("get", f"{base}/versions/", None, Perm.VIEW_PROTOCOL),
        ("get", f"{base}/versions/1/", None, Perm.VIEW_PROTOCOL),
        ("get", f"{base}/versions/1/diff/1/", None, Perm.VIEW_PROTOCOL),
        ("get", f"{base}/consent-documents/", None, Perm.VIEW_STUDY),
        ("post", f"{base}/transition/", {"to": "piloting"}, Perm.MANAGE_LIFECYCLE),
        ("get", f"{base}/members/", None, Perm.VIEW_STUDY),
        ("delete", f"{base}/members/{owner_membership.pk}/", None, Perm.MANAGE_MEMBERS),
        ("get", f"{base}/team-invitations/", None, Perm.MANAGE_MEMBERS),
        (
            "post",
            f"{base}/team-invitations/",
            {"email": "new.member@example.org", "role": "monitor"},
            Perm.MANAGE_MEMBERS,
        ),
        ("delete", f"{base}/team-invitations/{pending.pk}/", None, Perm.MANAGE_MEMBERS),
        ("get", f"{base}/participants/", None, Perm.VIEW_PARTICIPANTS),
        ("get", f"{base}/participants/?download=csv", None, Perm.VIEW_PARTICIPANTS),
        ("get", f"{base}/funnel/", None, Perm.VIEW_PARTICIPANTS),
        ("get", f"{base}/participants/{code}/identity/", None, Perm.VIEW_IDENTITY),
        (
            "post",
            f"{base}/participants/{code}/withdraw/",
            {"mode": "keep"},
            Perm.MANAGE_PARTICIPANTS,
        ),
        ("get", f"{base}/pilot-invites/", None, Perm.MANAGE_PARTICIPANTS),
        ("post", f"{base}/pilot-invites/", {"label": "tester"}, Perm.MANAGE_PARTICIPANTS),
    ]


def call(client, method, url, body):
    return (
        getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)
    )


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_each_role_gets_exactly_its_permissions(
    role, recruiting_study, member_of, api_as, rct_doc, enroll
):
    study = recruiting_study
    code = enroll(study).code
    user = member_of(study, role)
    client = api_as(user)
    for method, url, body, perm in endpoints(study, rct_doc, code):
        response = call(client, method, url, body)
        if perm in ROLE_PERMISSIONS[Role(role)]:
            assert response.status_code not in (403, 404), (role, method, url, response.data)
        else:
            assert response.status_code == 403, (role, method, url, response.status_code)


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_a_member_of_study_a_gets_404_on_every_study_b_endpoint(
    role, study, member_of, make_user, api_as, rct_doc, enroll
):
    # given: study B owned by someone else, and a member of study A with any role
    other_doc = copy.deepcopy(rct_doc)
    other_doc["study"]["slug"] = "study-b"
    bob = make_user("bob")
    study_b = study_create_from_protocol(doc=other_doc, author=bob)
    study_b = launch_study(study_b, bob)
    code = enroll(study_b).code
    user = member_of(study, role)
    client = api_as(user)
    # then: every study-B endpoint answers 404 and nothing changes
    for method, url, body, _ in endpoints(study_b, other_doc, code):
        assert call(client, method, url, body).status_code == 404, (method, url)
    study_b.refresh_from_db()
    assert study_b.status == "recruiting" and study_b.versions.count() == 1
    assert study_b.participants.get().status == "active"
    assert not study_b.pilot_invites.exists()
    listed = client.get("/api/studies/").data
    assert [s["slug"] for s in listed] == ["companion-rct"]


def test_anonymous_requests_are_refused(study, client):
    assert client.get("/api/studies/").status_code in (401, 403)
    assert client.get(f"/api/studies/{study.slug}/").status_code in (401, 403)


def test_a_platform_admin_sees_every_study(study, make_user, api_as):
    admin = make_user("root", is_superuser=True, is_staff=True)
    assert api_as(admin).get(f"/api/studies/{study.slug}/protocol/").status_code == 200
