"""Protocol versions are immutable; editing a live study creates a new version."""

from __future__ import annotations

import pytest

from studyplatform.core.models import AuditEvent
from studyplatform.studies.models import ConsentDocument, ProtocolVersion
from studyplatform.studies.protocol import ProtocolInvalid, content_hash
from studyplatform.studies.services import protocol_version_create, study_transition
from tests.factories import launch_study

pytestmark = pytest.mark.django_db


def launch(study, actor):
    study = launch_study(study, actor)
    return study


def test_editing_a_running_study_creates_a_new_immutable_version(study, owner, rct_doc):
    # given: a recruiting study at version 1
    study = launch(study, owner)
    v1 = study.current_version
    # when: the weekly survey moves to every 14 days
    rct_doc["surveys"]["schedule"][1]["rule"]["every_days"] = 14
    v2, created = protocol_version_create(
        study=study, doc=rct_doc, author=owner, change_note="Fortnightly surveys"
    )
    # then: version 2 exists with its own hash, version 1 is untouched, the study points at v2
    assert created and v2.number == 2
    v1.refresh_from_db()
    assert v1.content["surveys"]["schedule"][1]["rule"]["every_days"] == 7
    assert v2.content_hash == content_hash(rct_doc) != v1.content_hash
    assert v2.status_at_creation == "recruiting"
    study.refresh_from_db()
    assert study.current_version == v2
    event = AuditEvent.objects.get(action="protocol.version_create")
    assert event.data == {"number": 2, "hash": v2.content_hash, "note": "Fortnightly surveys"}


def test_a_version_row_cannot_be_modified(study):
    version = study.current_version
    version.change_note = "rewritten history"
    with pytest.raises(ValueError, match="immutable"):
        version.save()


def test_an_unchanged_document_creates_no_version(study, owner, rct_doc):
    version, created = protocol_version_create(study=study, doc=rct_doc, author=owner)
    assert not created and version.number == 1
    assert ProtocolVersion.objects.filter(study=study).count() == 1


def test_a_live_study_needs_a_change_note(study, owner, rct_doc):
    study = launch(study, owner)
    rct_doc["limits"]["messages_per_minute"] = 5
    with pytest.raises(ProtocolInvalid) as info:
        protocol_version_create(study=study, doc=rct_doc, author=owner, change_note="  ")
    assert [str(e) for e in info.value.errors] == [
        "change_note: describe the change (required once a study is live)"
    ]
    assert ProtocolVersion.objects.filter(study=study).count() == 1


def test_changed_consent_text_must_bump_its_version(study, owner, rct_doc):
    rct_doc["consent"]["documents"][0]["body"] += "\nA new paragraph."
    with pytest.raises(ProtocolInvalid) as info:
        protocol_version_create(study=study, doc=rct_doc, author=owner, change_note="x")
    assert [str(e) for e in info.value.errors] == [
        "consent.documents[0].version: the en consent text changed but its version is still 1; "
        "increase the version so participants re-consent"
    ]
    # nothing half-written: no version 2, no new consent rows
    assert ProtocolVersion.objects.filter(study=study).count() == 1
    assert ConsentDocument.objects.filter(study=study).count() == 2


def test_a_new_consent_version_is_added_beside_the_old(study, owner, rct_doc):
    rct_doc["consent"]["documents"][0]["body"] += "\nA new paragraph."
    rct_doc["consent"]["documents"][0]["version"] = 2
    protocol_version_create(study=study, doc=rct_doc, author=owner, change_note="consent v2")
    assert sorted(
        ConsentDocument.objects.filter(study=study, language="en").values_list("version", flat=True)
    ) == [1, 2]


def test_a_removed_arm_is_deactivated_not_deleted(study, owner, rct_doc):
    rct_doc["arms"] = rct_doc["arms"][:1]
    rct_doc["allocation"] = {"method": "simple"}
    protocol_version_create(study=study, doc=rct_doc, author=owner, change_note="one arm")
    assert dict(study.arms.values_list("key", "is_active")) == {"legacy": True, "current": False}


def test_the_slug_cannot_change(study, owner, rct_doc):
    rct_doc["study"]["slug"] = "renamed"
    with pytest.raises(ProtocolInvalid, match="must stay 'companion-rct'"):
        protocol_version_create(study=study, doc=rct_doc, author=owner)


def test_lifecycle_moves_only_along_allowed_transitions(study, owner):
    from studyplatform.studies.services import TransitionError

    with pytest.raises(TransitionError, match="a draft study cannot move to recruiting"):
        study_transition(study=study, to="recruiting", actor=owner)
    study = launch(study, owner)
    assert study.status == "recruiting"
    assert AuditEvent.objects.filter(action="study.transition").count() == 2
