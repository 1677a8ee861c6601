"""Pilot and launch: lifecycle moves, the launch checklist, model tests, pilot invitations and
resetting pilot data."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from studyplatform.core.models import AuditEvent
from studyplatform.participants.models import Identity, Participant, PilotInvite
from studyplatform.participants.services import JoinContext
from studyplatform.studies import launch
from studyplatform.studies.services import protocol_version_create, study_transition
from tests.factories import launch_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_as():
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


def _simulated(doc: dict) -> dict:
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": "simulated", "name": f"sim-{arm['key']}"}
    return doc


@pytest.fixture
def piloting_study(study, owner):
    protocol_version_create(study=study, doc=_simulated(study.protocol), author=owner)
    return study_transition(study=study, to="piloting", actor=owner)


def _launch(client, study):
    return client.post(
        reverse("console:launch_transition", args=[study.slug]), {"to": "recruiting"}
    )


def _check_rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-check="([^"]+)" class="(pass|fail)">', html))


def test_launch_is_blocked_until_the_models_were_tested_then_allowed(
    client_as, owner, piloting_study
):
    client = client_as(owner)
    launch_url = reverse("console:launch", args=[piloting_study.slug])
    # given: a piloting study on simulated models that were never tested
    rows = _check_rows(client.get(launch_url).content.decode())
    assert rows["endpoint:legacy"] == "pass"
    assert rows["model_check:legacy"] == "fail" and rows["model_check:current"] == "fail"
    # when: launching, it is blocked
    response = _launch(client, piloting_study)
    piloting_study.refresh_from_db()
    assert response.status_code == 302 and piloting_study.status == "piloting"
    assert "Not launched: 2 checklist items fail." in client.get(launch_url).content.decode()
    # when: the models are tested (each result is an audit event), then launched
    client.post(reverse("console:launch_test_models", args=[piloting_study.slug]))
    checks = AuditEvent.objects.filter(action="launch.model_check", study_slug=piloting_study.slug)
    assert {e.data["arm"]: e.data["ok"] for e in checks} == {"legacy": True, "current": True}
    assert set(_check_rows(client.get(launch_url).content.decode()).values()) == {"pass"}
    _launch(client, piloting_study)
    # then: the study is recruiting and the move is audited by the service
    piloting_study.refresh_from_db()
    assert piloting_study.status == "recruiting"
    assert AuditEvent.objects.filter(action="study.transition", data__to="recruiting").exists()


def test_checklist_blocks_a_study_missing_crisis_resources_in_one_language(
    client_as, owner, piloting_study
):
    # given: a two-language study whose crisis resources are written in English only
    doc = piloting_study.protocol
    doc["study"]["languages"] = ["en", "pt-br"]
    doc["safety"]["crisis_resources"] = {"en": "Call your local emergency number."}
    now = timezone.now()
    checks = {
        arm["key"]: launch.ModelCheck(True, now, "simulated", arm["model"]["name"])
        for arm in doc["arms"]
    }
    # when: the checklist runs
    items = {i.key: i for i in launch.launch_checklist(doc, model_checks=checks, env={}, now=now)}
    # then: exactly the crisis-resources item fails, and says which language is missing
    assert [k for k, i in items.items() if not i.ok] == ["crisis_resources"]
    assert items["crisis_resources"].why == "Missing: pt-br"


def test_a_changed_model_needs_a_new_test(client_as, owner, piloting_study):
    client = client_as(owner)
    client.post(reverse("console:launch_test_models", args=[piloting_study.slug]))
    doc = piloting_study.protocol
    doc["arms"][0]["model"]["name"] = "sim-other"
    protocol_version_create(study=piloting_study, doc=doc, author=owner, change_note="new model")
    rows = _check_rows(
        client.get(reverse("console:launch", args=[piloting_study.slug])).content.decode()
    )
    assert rows["model_check:legacy"] == "fail" and rows["model_check:current"] == "pass"


def test_openai_arm_without_a_key_fails_the_endpoint_check(monkeypatch, client_as, owner, study):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rows = _check_rows(
        client_as(owner).get(reverse("console:launch", args=[study.slug])).content.decode()
    )
    assert rows["endpoint:legacy"] == "fail"


def test_designer_may_invite_testers_but_not_launch(client_as, member_of, piloting_study):
    designer = member_of(piloting_study, "designer")
    client = client_as(designer)
    assert client.get(reverse("console:launch", args=[piloting_study.slug])).status_code == 200
    response = client.post(
        reverse("console:pilot_invite_create", args=[piloting_study.slug]), {"label": "Bea"}
    )
    assert response.status_code == 302
    assert _launch(client, piloting_study).status_code == 403
    assert (
        client.post(reverse("console:launch_test_models", args=[piloting_study.slug])).status_code
        == 403
    )


def test_a_pilot_link_is_shown_once_and_only_its_digest_is_stored(client_as, owner, piloting_study):
    client = client_as(owner)
    client.post(
        reverse("console:pilot_invite_create", args=[piloting_study.slug]), {"label": "Bea"}
    )
    html = client.get(reverse("console:launch", args=[piloting_study.slug])).content.decode()
    token = re.search(r"/s/companion-rct/\?pilot=([\w-]+)", html).group(1)
    invite = PilotInvite.objects.get()
    assert invite.label == "Bea" and token not in invite.token_digest
    assert (
        "?pilot="
        not in client.get(reverse("console:launch", args=[piloting_study.slug])).content.decode()
    )
    client.post(reverse("console:pilot_invite_revoke", args=[piloting_study.slug, invite.pk]))
    invite.refresh_from_db()
    assert invite.revoked
    assert (
        AuditEvent.objects.filter(action__in=["pilot_invite.create", "pilot_invite.revoke"]).count()
        == 2
    )


def test_resetting_pilot_data_deletes_pilot_testers_data_only(
    client_as, owner, piloting_study, enroll
):
    from studyplatform.core.digests import new_token, token_digest

    # given: a pilot tester enrolled while piloting, then a real participant after launch
    token = new_token()
    PilotInvite.objects.create(study=piloting_study, label="Bea", token_digest=token_digest(token))
    pilot = enroll(piloting_study, join=JoinContext(pilot_token=token))
    assert pilot.is_pilot
    study = launch_study(piloting_study, owner)
    real = enroll(study)
    # when: pilot data is reset
    response = client_as(owner).post(reverse("console:pilot_reset", args=[study.slug]))
    # then: the pilot tester's data is deleted, the real participant is untouched, and it is audited
    assert response.status_code == 302
    pilot.refresh_from_db()
    real.refresh_from_db()
    assert pilot.status == "withdrawn" and pilot.withdrawal_mode == "delete"
    assert not Identity.objects.filter(participant=pilot).exists()
    assert real.status == "active" and Identity.objects.filter(participant=real).exists()
    assert AuditEvent.objects.get(action="pilot.reset").data == {"participants": 1}
    assert Participant.objects.count() == 2
