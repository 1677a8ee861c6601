"""Screener answers and stratification factors as covariates: loaded, validated, modelled."""

from __future__ import annotations

import pytest

from analysis.data import load_study_frames, participant_covariates
from studyplatform.studies.protocol import ProtocolInvalid, parse_protocol_text, to_yaml

pytestmark = pytest.mark.django_db


def test_the_participants_frame_has_screener_and_stratum_columns(recruiting_study, enroll):
    # given: two participants enrolled through the real service (stratified by gender)
    woman = enroll(recruiting_study)
    man = enroll(recruiting_study, answers={"age": 52, "uses_chatbots": True, "gender": "man"})
    # when
    frames = load_study_frames(recruiting_study)
    # then
    people = frames.participants.set_index("participant")
    assert people.loc[woman.code, "screener.age"] == 30.0
    assert people.loc[man.code, "screener.age"] == 52.0
    assert people.loc[man.code, "screener.uses_chatbots"] == "True"
    assert people.loc[woman.code, "stratum.gender"] == "woman"
    assert people.loc[man.code, "stratum.gender"] == "man"
    # and the stratum is the one the allocation used
    assert woman.allocation.stratum == "gender=woman"


def test_free_text_and_multiple_choice_answers_are_not_covariates():
    protocol = {
        "screener": {
            "questions": [
                {"key": "why", "type": "text", "text": "Why?"},
                {"key": "uses", "type": "multiple_choice", "text": "Which?"},
                {"key": "age", "type": "number", "text": "Age?"},
            ]
        },
        "allocation": {"method": "permuted_blocks", "strata": ["age"]},
    }
    frame = participant_covariates(protocol, [{"why": "my name is Ana", "uses": ["a"], "age": 3}])
    # (strata only exist for a stratified allocation)
    assert list(frame.columns) == ["screener.age"]


def errors_of(doc: dict) -> list[str]:
    text = to_yaml(doc)
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text(text)
    return [str(e) for e in info.value.errors]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_plan_may_name_screener_answers_and_strata_as_covariates(rct_doc):
    rct_doc["analysis"]["covariates"] = ["screener.age", "stratum.gender"]
    rct_doc["analysis"]["arm_contrast"] = {"method": "ancova", "reference": "legacy"}
    rct_doc["analysis"]["multiplicity"] = {
        "outcomes": ["who5.percentage"],
        "terms": ["arm_contrast"],
        "correction": "holm",
    }
    doc = parse_protocol_text(to_yaml(rct_doc))
    assert doc["analysis"]["covariates"] == ["screener.age", "stratum.gender"]


def test_unknown_covariates_are_errors_with_their_path_and_line(rct_doc):
    rct_doc["analysis"]["covariates"] = ["screener.height", "stratum.age", "income"]
    text = to_yaml(rct_doc)
    assert errors_of(rct_doc) == [
        "analysis.covariates[0]: no screener question with key 'height' "
        f"(line {line_of(text, '- screener.height')})",
        "analysis.covariates[1]: 'age' is not a stratification factor (gender) "
        f"(line {line_of(text, '- stratum.age')})",
        "analysis.covariates[2]: unknown covariate 'income': use screener.<question key> or "
        f"stratum.<stratification factor> (line {line_of(text, '- income')})",
    ]


def test_a_free_text_screener_question_cannot_be_a_covariate(rct_doc):
    rct_doc["screener"]["questions"].append({"key": "story", "type": "text", "text": "Tell us"})
    rct_doc["analysis"]["covariates"] = ["screener.story"]
    (error,) = errors_of(rct_doc)
    assert error.startswith(
        "analysis.covariates[0]: screener question 'story' is text; only number, yes_no and "
        "single_choice answers can be covariates (line "
    )


def test_arm_contrast_and_multiplicity_keys_are_checked(rct_doc):
    rct_doc["analysis"]["arm_contrast"] = {"reference": "placebo"}
    rct_doc["analysis"]["multiplicity"] = {"outcomes": ["phq9.total"]}
    text = to_yaml(rct_doc)
    assert errors_of(rct_doc) == [
        f"analysis.arm_contrast.reference: no arm with key 'placebo' "
        f"(line {line_of(text, 'reference: placebo')})",
        "analysis.multiplicity.outcomes[0]: 'phq9.total' is not one of analysis.outcomes "
        f"(line {line_of(text, '- phq9.total')})",
    ]


def test_an_unknown_correction_is_a_schema_error(rct_doc):
    rct_doc["analysis"]["multiplicity"] = {"correction": "sidak"}
    (error,) = errors_of(rct_doc)
    assert error.startswith("analysis.multiplicity.correction: ")
    assert "holm" in error
