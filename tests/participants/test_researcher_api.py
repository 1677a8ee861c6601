"""Researcher side of participants: list, CSV, arm concealment, withdrawal, vault audit."""

from __future__ import annotations

import pytest

from studyplatform.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_monitors_never_see_the_arm_but_analysts_do(recruiting_study, enroll, member_of, api_as):
    enroll(recruiting_study)
    url = f"/api/studies/{recruiting_study.slug}/participants/"
    monitor_rows = api_as(member_of(recruiting_study, "monitor")).get(url).data
    analyst_rows = api_as(member_of(recruiting_study, "analyst")).get(url).data
    assert "arm" not in monitor_rows[0]
    assert analyst_rows[0]["arm"] in {"legacy", "current"}
    csv_text = (
        api_as(member_of(recruiting_study, "monitor", "mon2"))
        .get(url + "?download=csv")
        .content.decode()
    )
    assert csv_text.splitlines()[0] == (
        "code,status,is_pilot,language,timezone,enrolled_at,last_seen_at,consent_version,"
        "withdrawn_at,withdrawal_mode,withdrawal_by"
    )


def test_filters_by_status(recruiting_study, enroll, owner, api_as):
    from studyplatform.participants.services import participant_withdraw

    enroll(recruiting_study)
    b = enroll(recruiting_study)
    participant_withdraw(participant=b, mode="keep", by="participant")
    url = f"/api/studies/{recruiting_study.slug}/participants/?status=withdrawn"
    assert [r["code"] for r in api_as(owner).get(url).data] == [b.code]


def test_researchers_withdraw_on_request_audited_and_final(recruiting_study, enroll, owner, api_as):
    p = enroll(recruiting_study)
    url = f"/api/studies/{recruiting_study.slug}/participants/{p.code}/withdraw/"
    first = api_as(owner).post(url, {"mode": "delete", "reason": "asked by email"}, format="json")
    assert first.status_code == 200 and first.data["withdrawal_by"] == "researcher"
    again = api_as(owner).post(url, {"mode": "keep"}, format="json")
    assert again.status_code == 409
    event = AuditEvent.objects.get(action="participant.withdraw")
    assert event.actor == owner and event.data["by"] == "researcher"


def test_reading_the_vault_is_audited(recruiting_study, enroll, member_of, api_as):
    p = enroll(recruiting_study, email="vault@example.org")
    reviewer = member_of(recruiting_study, "safety_reviewer")
    data = (
        api_as(reviewer)
        .get(f"/api/studies/{recruiting_study.slug}/participants/{p.code}/identity/")
        .data
    )
    assert data["email"] == "vault@example.org"
    event = AuditEvent.objects.get(action="vault.view")
    assert event.actor == reviewer and event.target_id == str(p.pk)


def test_pilot_invites_show_the_link_once(study, owner, api_as, client):
    from studyplatform.studies.services import study_transition

    study = study_transition(study=study, to="piloting", actor=owner)
    created = api_as(owner).post(
        f"/api/studies/{study.slug}/pilot-invites/", {"label": "Tess"}, format="json"
    )
    link = created.data["link"]
    assert "?pilot=" in link
    listed = api_as(owner).get(f"/api/studies/{study.slug}/pilot-invites/").data
    assert "link" not in listed[0] and listed[0]["label"] == "Tess"
    page = client.get(link.replace("http://testserver", ""), follow=True)
    assert b"pilot tester" in page.content
