"""The role matrix: every role against every study endpoint, and strangers from other studies.

The expected answers are written out by hand below, one row per endpoint, rather than derived
from studies/roles.py: a test that reads the code's own role table would agree with any mistake
made in that table. Allowed roles must get the exact success status (a 500 or a 409 is a
failure, not "allowed"); every other role must get 403.
"""

from __future__ import annotations

import copy

import pytest
from rest_framework.test import APIClient

from studyplatform.studies.models import Membership
from studyplatform.studies.roles import Role
from studyplatform.studies.services import (
    invitation_create,
    study_create_from_protocol,
)
from tests.factories import launch_study

pytestmark = pytest.mark.django_db

OWNER, DESIGNER, MONITOR, ANALYST, SAFETY = (
    "owner",
    "designer",
    "monitor",
    "analyst",
    "safety_reviewer",
)
ROLES = [OWNER, DESIGNER, MONITOR, ANALYST, SAFETY]
EVERYONE = frozenset(ROLES)

# (name, method, path under /api/studies/<slug>/, body, success status, roles allowed).
# The order matters only for the writes at the end: each leaves the study in a state where the
# following rows still succeed for an allowed role.
MATRIX = [
    ("detail", "get", "", None, 200, EVERYONE),
    ("arms", "get", "arms/", None, 200, {OWNER, DESIGNER, ANALYST, SAFETY}),
    ("protocol", "get", "protocol/", None, 200, {OWNER, DESIGNER, ANALYST, SAFETY}),
    ("versions", "get", "versions/", None, 200, {OWNER, DESIGNER, ANALYST, SAFETY}),
    ("version", "get", "versions/1/", None, 200, {OWNER, DESIGNER, ANALYST, SAFETY}),
    ("diff", "get", "versions/1/diff/1/", None, 200, {OWNER, DESIGNER, ANALYST, SAFETY}),
    ("consent", "get", "consent-documents/", None, 200, EVERYONE),
    ("members", "get", "members/", None, 200, EVERYONE),
    ("invitations", "get", "team-invitations/", None, 200, {OWNER}),
    ("participants", "get", "participants/", None, 200, EVERYONE),
    ("participants.csv", "get", "participants/?download=csv", None, 200, EVERYONE),
    ("funnel", "get", "funnel/", None, 200, EVERYONE),
    ("identity", "get", "participants/{code}/identity/", None, 200, {OWNER, SAFETY}),
    ("pilot-invites", "get", "pilot-invites/", None, 200, {OWNER, DESIGNER}),
    # --- writes
    ("edit protocol", "put", "protocol/", "{protocol}", 201, {OWNER, DESIGNER}),
    (
        "invite member",
        "post",
        "team-invitations/",
        {"email": "new.member@example.org", "role": "monitor"},
        201,
        {OWNER},
    ),
    ("revoke invitation", "delete", "team-invitations/{pending}/", None, 204, {OWNER}),
    ("remove member", "delete", "members/{spare}/", None, 204, {OWNER}),
    ("create pilot invite", "post", "pilot-invites/", {"label": "tester"}, 201, {OWNER, DESIGNER}),
    ("withdraw", "post", "participants/{code}/withdraw/", {"mode": "keep"}, 200, {OWNER, DESIGNER}),
    ("transition", "post", "transition/", {"to": "running"}, 200, {OWNER}),
]


def requests_for(study, doc, code):
    """(name, method, url, body, success status, allowed roles) with this study's ids filled."""
    changed = copy.deepcopy(doc)
    changed["limits"]["messages_per_minute"] = 3
    pending = invitation_create(
        study=study, email="pending@example.org", role="analyst", actor=None
    )
    spare = Membership.objects.get(study=study, user__username=f"spare-{study.slug}")
    ids = {"code": code, "pending": pending.pk, "spare": spare.pk}
    rows = []
    for name, method, tail, body, ok, allowed in MATRIX:
        if body == "{protocol}":
            body = {"protocol": changed, "change_note": "x"}
        url = f"/api/studies/{study.slug}/" + tail.format(**ids)
        rows.append((name, method, url, body, ok, allowed))
    return rows


def call(client, method, url, body):
    return (
        getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)
    )


def test_the_matrix_names_every_role_and_each_write_is_refused_to_someone():
    # The matrix itself: a typo in a role name would silently refuse that role everywhere.
    for name, *_, allowed in MATRIX:
        assert set(allowed) <= EVERYONE, name
    # The study's roles are exactly the five written out above.
    assert {r.value for r in Role} == EVERYONE


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_its_answers(
    role, recruiting_study, member_of, api_as, rct_doc, enroll
):
    # given: a participant, a spare member to remove, and a member holding `role`
    study = recruiting_study
    code = enroll(study).code
    member_of(study, "analyst", username=f"spare-{study.slug}")
    client = api_as(member_of(study, role))
    # when / then: allowed rows answer their exact success status, the others 403
    for name, method, url, body, ok, allowed in requests_for(study, rct_doc, code):
        response = call(client, method, url, body)
        expected = ok if role in allowed else 403
        assert response.status_code == expected, (role, name, response.status_code, response.data)
    # and the refused writes changed nothing
    study.refresh_from_db()
    assert (study.status == "running") == (role == OWNER)
    assert (study.versions.count() == 2) == (role in {OWNER, DESIGNER})
    assert (study.participants.get().status == "withdrawn") == (role in {OWNER, DESIGNER})
    assert study.memberships.filter(user__username=f"spare-{study.slug}").exists() == (
        role != OWNER
    )


@pytest.mark.parametrize("role", ROLES)
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
    member_of(study_b, "analyst", username="spare-study-b")
    client = api_as(member_of(study, role))
    # then: every study-B endpoint answers 404 and nothing changes
    for name, method, url, body, *_ in requests_for(study_b, other_doc, code):
        assert call(client, method, url, body).status_code == 404, (name, url)
    study_b.refresh_from_db()
    assert study_b.status == "recruiting" and study_b.versions.count() == 1
    assert study_b.participants.get().status == "active"
    assert study_b.memberships.count() == 2
    assert not study_b.pilot_invites.exists()
    listed = client.get("/api/studies/").data
    assert [s["slug"] for s in listed] == ["companion-rct"]


def test_a_signed_in_researcher_with_no_role_gets_404_everywhere(
    recruiting_study, member_of, make_user, api_as, rct_doc, enroll
):
    # given: a verified researcher account that holds no role in the study
    code = enroll(recruiting_study).code
    member_of(recruiting_study, "analyst", username=f"spare-{recruiting_study.slug}")
    client = api_as(make_user("stranger"))
    # then: the study does not exist as far as they can tell
    for name, method, url, body, *_ in requests_for(recruiting_study, rct_doc, code):
        assert call(client, method, url, body).status_code == 404, (name, url)
    assert client.get("/api/studies/").data == []


def test_anonymous_requests_are_refused_everywhere(recruiting_study, member_of, rct_doc, enroll):
    code = enroll(recruiting_study).code
    member_of(recruiting_study, "analyst", username=f"spare-{recruiting_study.slug}")
    client = APIClient()
    assert client.get("/api/studies/").status_code == 403
    for name, method, url, body, *_ in requests_for(recruiting_study, rct_doc, code):
        assert call(client, method, url, body).status_code == 403, (name, url)
    recruiting_study.refresh_from_db()
    assert recruiting_study.status == "recruiting"


def test_a_platform_admin_sees_every_study(study, make_user, api_as):
    admin = make_user("root", is_superuser=True, is_staff=True)
    assert api_as(admin).get(f"/api/studies/{study.slug}/protocol/").status_code == 200
