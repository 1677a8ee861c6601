"""The synthetic cohort: valid platform rows, refused on launched studies."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studyplatform.chat.models import Message
from studyplatform.core.models import AuditEvent
from studyplatform.participants.models import Allocation, ConsentRecord, Participant
from studyplatform.studies.selectors import current_consent_for
from surveys.models import Invitation, Response
from surveys.scoring import score_answers

pytestmark = pytest.mark.django_db


def test_it_fills_a_draft_study_with_pilot_participants_chats_and_scored_surveys(study):
    # when
    out = StringIO()
    call_command(
        "simulate_study", study.slug, participants=20, days=28, effect=1.0, seed=3, stdout=out
    )
    # then: every participant is a pilot with consent and an allocation to one of the arms
    people = Participant.objects.filter(study=study)
    assert people.count() == 20
    assert set(people.values_list("is_pilot", flat=True)) == {True}
    assert ConsentRecord.objects.filter(participant__study=study).count() == 20
    # and consent is recorded by the participants service, as for a real enrollment: a copy of
    # what the current document says, and one audit event for the simulation
    document = current_consent_for(study, "en")
    assert set(
        ConsentRecord.objects.filter(participant__study=study).values_list(
            "document", "version", "language", "text_hash"
        )
    ) == {(document.pk, document.version, document.language, document.text_hash)}
    assert AuditEvent.objects.get(action="participant.simulate").data == {"participants": 20}
    assert set(
        Allocation.objects.filter(participant__study=study).values_list("arm__key", flat=True)
    ) == {"legacy", "current"}
    # and chats alternate user/assistant with readable (decrypted) content
    messages = Message.objects.filter(participant__study=study)
    assert messages.filter(role="user").count() == messages.filter(role="assistant").count() > 0
    assert messages.filter(role="user").first().content.strip() != ""
    # and every completed invitation has submitted, correctly scored responses
    completed = Invitation.objects.filter(study=study, status="completed")
    assert completed.exists()
    assert Invitation.objects.filter(study=study, status="expired").exists()  # dropout
    for response in Response.objects.filter(participant__study=study)[:30]:
        assert response.status == "submitted"
        assert score_answers(response.instrument_key, response.answers).scores == response.scores
    who5 = Response.objects.filter(participant__study=study, instrument_key="who5").first()
    assert 0 <= who5.scores["percentage"] <= 100
    assert "Simulated 20 participants" in out.getvalue()


def test_it_refuses_a_recruiting_study_and_writes_nothing(recruiting_study):
    with pytest.raises(CommandError) as error:
        call_command("simulate_study", recruiting_study.slug, participants=5)
    assert str(error.value) == (
        "study 'companion-rct' is recruiting: simulated participants would mix with real ones "
        "(use --force to do it anyway)"
    )
    assert not Participant.objects.filter(study=recruiting_study).exists()


def test_force_allows_a_recruiting_study(recruiting_study):
    call_command("simulate_study", recruiting_study.slug, participants=4, days=14, force=True)
    assert Participant.objects.filter(study=recruiting_study, is_pilot=True).count() == 4
