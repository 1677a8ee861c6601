"""Joining: study availability, panel ids, consent, the vault, re-consent."""

from __future__ import annotations

import copy

import pytest

from studyplatform.core.digests import lookup_digest
from studyplatform.core.models import AuditEvent
from studyplatform.participants.models import (
    Allocation,
    ConsentRecord,
    FunnelCount,
    Identity,
    Participant,
)
from studyplatform.participants.services import (
    EnrollmentError,
    JoinContext,
    consent_due,
    consent_renew,
    join_state,
)
from studyplatform.studies.services import protocol_version_create, study_transition

pytestmark = pytest.mark.django_db


def test_enrollment_writes_participant_vault_consent_and_allocation(recruiting_study, enroll):
    p = enroll(
        recruiting_study,
        email="Ana@Example.org",
        join=JoinContext(
            panel="prolific", panel_pid="5f9a", panel_study_id="S1", panel_session_id="X9"
        ),
    )
    assert p.status == "active" and p.code.startswith("P-") and p.timezone == "America/Sao_Paulo"
    identity = Identity.objects.get(participant=p)
    assert identity.email == "Ana@Example.org"
    assert identity.email_digest == lookup_digest("ana@example.org", "email")
    assert identity.panel_pid == "5f9a" and 1 <= identity.date_shift_days <= 364
    record = ConsentRecord.objects.get(participant=p)
    assert record.version == 1 and record.choices["share_chats"] is True
    assert Allocation.objects.get(participant=p).arm.key in {"legacy", "current"}
    assert FunnelCount.objects.get(study=recruiting_study, stage="consented").count == 1
    assert AuditEvent.objects.filter(action="participant.enroll", target_id=str(p.pk)).exists()


def test_the_vault_is_encrypted_at_rest(recruiting_study, enroll):
    from django.db import connection

    p = enroll(recruiting_study, email="secret.person@example.org")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT email, name FROM participants_identity WHERE participant_id = %s", [p.pk]
        )
        raw_email, _ = cursor.fetchone()
    assert "secret.person" not in raw_email


def test_a_duplicate_panel_id_cannot_enroll_twice(recruiting_study, enroll):
    enroll(recruiting_study, join=JoinContext(panel="prolific", panel_pid="PID-1"))
    with pytest.raises(EnrollmentError) as info:
        enroll(recruiting_study, join=JoinContext(panel="prolific", panel_pid="pid-1"))
    assert info.value.code == "already_enrolled"
    assert Participant.objects.count() == 1


def test_an_email_cannot_join_the_same_study_twice(recruiting_study, enroll):
    enroll(recruiting_study, email="same@example.org")
    with pytest.raises(EnrollmentError) as info:
        enroll(recruiting_study, email="SAME@example.org")
    assert info.value.code == "email_taken"


JOIN = {
    "answers": {"age": 30, "uses_chatbots": True, "gender": "woman"},
    "language": "en",
    "timezone_name": "UTC",
    "choices": {"agree": True, "adult": True},
    "signature_name": "Ana Souza",
    "client_key": "client-a",
}


def test_joining_with_an_address_already_in_the_study_writes_nothing_and_tells_its_owner(
    recruiting_study, enroll, mailoutbox
):
    from studyplatform.participants.services import participant_join

    # given: same@ has joined
    first = enroll(recruiting_study, email="same@example.org")
    # when: the consent form is submitted again with that address
    result = participant_join(study=recruiting_study, email="SAME@example.org", **JOIN)
    # then: no participant, nothing written, and the owner hears about it by email
    assert result.participant is None and result.return_token == ""
    assert Participant.objects.count() == 1 and ConsentRecord.objects.count() == 1
    [note] = mailoutbox
    assert note.to == ["same@example.org"] and "tried to join" in note.subject
    event = AuditEvent.objects.get(action="participant.enroll_email_taken")
    assert event.target_id == str(first.pk) and "same@" not in str(event.data)


def test_already_joined_notices_are_capped_per_address(
    recruiting_study, enroll, mailoutbox, settings
):
    from studyplatform.participants.services import participant_join

    settings.SIGNIN_EMAIL_LIMIT = 2
    enroll(recruiting_study, email="same@example.org")
    for n in range(4):
        participant_join(
            study=recruiting_study, email="same@example.org", **{**JOIN, "client_key": f"c{n}"}
        )
    assert len(mailoutbox) == 2


def test_joining_without_an_email_issues_a_return_link_in_the_same_transaction(
    recruiting_study, mailoutbox
):
    from studyplatform.core.digests import token_digest
    from studyplatform.participants.services import participant_join

    result = participant_join(study=recruiting_study, **JOIN)
    assert result.participant.return_token_digest == token_digest(result.return_token)
    assert mailoutbox == []


def test_joining_with_an_email_sends_a_welcome_that_says_how_to_come_back(
    recruiting_study, mailoutbox
):
    from studyplatform.participants.services import participant_join

    result = participant_join(study=recruiting_study, email="new@example.org", **JOIN)
    assert result.participant is not None and result.return_token == ""
    [welcome] = mailoutbox
    assert welcome.to == ["new@example.org"] and "/p/signin/" in welcome.body


def test_a_mail_failure_after_joining_leaves_the_enrollment_standing(
    recruiting_study, monkeypatch, caplog
):
    # given: the mail server is down
    from studyplatform.participants.services import enrollment, participant_join

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(enrollment, "send_mail", refuse)
    # when: someone joins with an email address, and again with the same one
    first = participant_join(study=recruiting_study, email="new@example.org", **JOIN)
    again = participant_join(study=recruiting_study, email="new@example.org", **JOIN)
    # then: both answer normally (no exception reaches the view), one participant, failures logged
    assert first.participant is not None and again.participant is None
    assert Participant.objects.filter(study=recruiting_study).count() == 1
    assert "enrollment email could not be sent" in caplog.text


def test_closed_and_full_studies_refuse_and_write_nothing(recruiting_study, owner, enroll):
    recruiting_study.target_enrollment = 1
    recruiting_study.save()
    enroll(recruiting_study)
    assert join_state(recruiting_study) == "full"
    with pytest.raises(EnrollmentError) as info:
        enroll(recruiting_study)
    assert info.value.code == "full"
    study = study_transition(study=recruiting_study, to="closed", actor=owner)
    assert join_state(study) == "closed"
    with pytest.raises(EnrollmentError):
        enroll(study)
    assert Participant.objects.count() == 1 and Identity.objects.count() == 1


def test_a_piloting_study_accepts_only_invited_testers(study, owner, enroll):
    from studyplatform.core.digests import token_digest
    from studyplatform.participants.models import PilotInvite

    study = study_transition(study=study, to="piloting", actor=owner)
    assert join_state(study) == "invite_only"
    with pytest.raises(EnrollmentError):
        enroll(study)
    PilotInvite.objects.create(study=study, label="Tess", token_digest=token_digest("tok"))
    tester = enroll(study, join=JoinContext(pilot_token="tok"))
    assert tester.is_pilot
    # the invitation is used up
    with pytest.raises(EnrollmentError):
        enroll(study, join=JoinContext(pilot_token="tok"))


def test_required_consent_items_must_be_ticked(recruiting_study, enroll):
    with pytest.raises(EnrollmentError) as info:
        enroll(recruiting_study, choices={"agree": True, "adult": False})
    assert str(info.value) == "required consent items not ticked: adult"
    assert Participant.objects.count() == 0


def test_a_typed_name_signature_is_required_when_the_protocol_says(recruiting_study, enroll):
    with pytest.raises(EnrollmentError) as info:
        enroll(recruiting_study, signature_name="  ")
    assert info.value.code == "signature_required"


def test_a_new_consent_version_requires_re_consent(recruiting_study, owner, enroll, rct_doc):
    p = enroll(recruiting_study)
    assert consent_due(p) is None
    doc = copy.deepcopy(rct_doc)
    doc["consent"]["documents"][0]["version"] = 2
    doc["consent"]["documents"][0]["body"] += "\nWe now also record reply timings."
    protocol_version_create(study=recruiting_study, doc=doc, author=owner, change_note="consent 2")
    due = consent_due(p)
    assert due is not None and due.version == 2
    with pytest.raises(EnrollmentError):
        consent_renew(participant=p, choices={"agree": True}, signature_name="Ana")
    consent_renew(participant=p, choices={"agree": True, "adult": True}, signature_name="Ana")
    assert consent_due(p) is None
    assert list(p.consent_records.order_by("signed_at").values_list("version", flat=True)) == [1, 2]
