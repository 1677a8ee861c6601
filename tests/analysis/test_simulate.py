"""The synthetic cohort: valid platform rows, refused on launched studies."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analysis.data import load_study_frames
from analysis.management.commands.simulate_study import simulate
from analysis.pipeline import analyse
from analysis.stats.mixedlm import fit_mixedlm
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


def test_its_planted_effect_is_lagged_and_not_the_same_period_association(study):
    # given 200 participants, baseline + 5 weekly surveys, --effect 0.5 (WHO-5 points per
    # message sent in the week before the previous survey), generated at a fixed instant. The
    # instant decides which survey occasions have closed, so it changes how many random draws
    # come before the answers: at six hours of one day this seed's lagged estimate ranged
    # 0.42-0.69, as seeds 1-8 at one hour range 0.48-0.70 (SE about 0.055): sampling noise, not
    # a misalignment of days and windows, but a test on the wall clock would pass or fail by the
    # hour it runs.
    simulate(
        study,
        n=200,
        days=42,
        effect=0.5,
        seed=5,
        now=dt.datetime(2026, 11, 20, 4, 30, tzinfo=dt.UTC),
    )
    plan = study.current_version.content["analysis"]
    frames = load_study_frames(study, instruments=["who5"])
    # when the platform links usage to outcomes and fits its same-period association model
    # (usage per message, the scale --effect is given in, rather than a log transform)
    plan = {**plan, "outcomes": ["who5.percentage"], "usage_transform": "none"}
    result = analyse(frames, plan)
    models = result.results["outcomes"]["who5.percentage"].values()
    same_period = next(
        m["fixed"]["messages_sent_within"]
        for m in models
        if isinstance(m, dict) and "messages_sent_within" in (m.get("fixed") or {})
    )
    # and a lagged within-person model is fitted by hand on the same linked table
    linked = result.linked.rename(columns={"who5.percentage": "y", "who5.percentage_lag": "y_lag"})
    data = linked[linked["wave"] >= 2].dropna(subset=["y", "y_lag", "messages_sent_lag"])
    person = data.groupby("participant")["messages_sent_lag"].transform("mean")
    data = data.assign(x_within=data["messages_sent_lag"] - person, x_between=person)
    lagged = fit_mixedlm(
        "y ~ x_within + x_between + y_lag + C(wave)", data, "participant", "~1"
    ).to_dict()["fixed"]["x_within"]
    # then the lagged model finds the planted effect (scores are clipped at 0 and 100, which
    # can only shrink it)
    assert lagged["ci_low"] > 0.25
    assert lagged["ci_low"] <= 0.5 <= lagged["ci_high"] + 0.05
    # and the same-period association, which the outcome is not generated from, does not
    assert same_period["ci_high"] < 0.25
