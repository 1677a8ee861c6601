"""A protocol's `classifiers` section and the definitions: every error names the path, says what
is wrong in words a researcher can act on, and carries the line."""

from __future__ import annotations

import copy

import pytest

from studyplatform.classifiers.library import (
    DefinitionError,
    definition_errors,
    load_definition,
    protocol_classifiers,
    shipped_definitions,
)
from studyplatform.studies.protocol import ProtocolInvalid, parse_protocol_text, to_yaml
from tests.classifiers.conftest import classifier_doc

# The endpoint registry also reads the endpoints an admin registered (database).
pytestmark = pytest.mark.django_db

SHIPPED_KEYS = {
    "sycophancy",
    "false_belief_validation",
    "reliance_encouragement",
    "affection_user",
    "affection_assistant",
    "support_seeking",
    "loneliness",
    "anthropomorphism",
    "crisis_second_opinion",
}


def errors_of(doc: dict) -> list[str]:
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text(to_yaml(doc))
    return [str(e) for e in info.value.errors]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def binary(**extra) -> dict:
    return {
        "key": "custom",
        "version": 1,
        "title": {"en": "Custom"},
        "scope": "user_message",
        "question": {"en": "Is it so?", "pt-BR": "É assim?"},
        "output": {
            "type": "binary",
            "levels": [
                {"code": "yes", "label": {"en": "Yes", "pt-BR": "Sim"}},
                {"code": "no", "label": {"en": "No", "pt-BR": "Não"}},
            ],
        },
        "source": "test",
        **extra,
    }


def test_the_shipped_set_covers_the_issue_and_speaks_both_languages():
    shipped = shipped_definitions()
    assert {d.key for d in shipped.values()} >= SHIPPED_KEYS
    for definition in shipped.values():
        assert definition.has_language("en") and definition.has_language("pt-br")
        assert definition.source  # every file cites its taxonomy
        assert definition.generation_settings()["temperature"] == 0
    crisis = shipped["crisis_second_opinion@1"]
    assert "never a replacement" in crisis.note


def test_a_valid_section_resolves_each_classifier_with_the_protocol_judge(rct_doc):
    doc = classifier_doc(rct_doc, endpoint="openai", run=["sycophancy@1", binary()])
    doc["classifiers"]["judge"]["model"] = "gpt-4.1-2025-04-14"
    parsed = parse_protocol_text(to_yaml(doc))
    section = protocol_classifiers(parsed["classifiers"])
    assert [d.ref for d in section.definitions] == ["sycophancy@1", "custom@1"]
    assert {d.judge.name for d in section.definitions} == {"openai/gpt-4.1-2025-04-14"}


def test_an_unknown_shipped_classifier_is_named_with_its_line(rct_doc):
    doc = classifier_doc(rct_doc, endpoint="openai", run=["loneliness@1", "nope@3"])
    doc["classifiers"]["judge"]["model"] = "gpt-4.1-2025-04-14"
    text = to_yaml(doc)
    errors = errors_of(doc)
    assert len(errors) == 1
    assert errors[0].startswith("classifiers.run[1]: no shipped classifier 'nope@3' (shipped: ")
    assert errors[0].endswith(f"(line {line_of(text, 'nope@3')})")


def test_a_judge_must_be_a_registered_endpoint_and_allowed_model(rct_doc):
    doc = classifier_doc(rct_doc, endpoint="elsewhere")
    assert errors_of(doc) == [
        "classifiers.judge.endpoint: no registered endpoint called 'elsewhere'; registered "
        f"endpoints: openai, simulated (line {line_of(to_yaml(doc), 'endpoint: elsewhere')})"
    ]
    doc = classifier_doc(rct_doc, endpoint="openai")
    [error] = errors_of(doc)
    assert error.startswith("classifiers.judge.model: 'gpt-test-current' is not an allowed model")


def test_a_protocol_cannot_give_a_judge_a_url_or_a_key(rct_doc):
    doc = classifier_doc(rct_doc, endpoint="simulated")
    doc["classifiers"]["judge"]["base_url"] = "http://10.0.0.1/v1"
    errors = errors_of(doc)
    assert any(e.startswith("classifiers.judge.base_url") for e in errors)


def test_the_consent_checkbox_must_be_in_every_consent_document(rct_doc):
    doc = classifier_doc(rct_doc, endpoint="simulated")
    doc["consent"]["documents"][1]["checkboxes"].pop()
    errors = errors_of(doc)
    assert any(
        e.startswith(
            "classifiers.consent_checkbox: every consent document needs a checkbox with key "
            "'classify_chats'"
        )
        for e in errors
    ), errors


def test_a_custom_definition_reports_its_own_path(rct_doc):
    bad = binary()
    bad["output"]["levels"].append({"code": "maybe", "label": {"en": "Maybe", "pt-BR": "Talvez"}})
    doc = classifier_doc(rct_doc, endpoint="simulated", run=[bad])
    [error] = errors_of(doc)
    assert error.startswith(
        "classifiers.run[0].output.levels: a binary classifier has exactly two levels"
    )


def test_a_gate_must_name_an_earlier_classifier_of_the_same_scope(rct_doc):
    child = binary(key="child", gate={"classifier": "loneliness", "levels": ["yes"]})
    doc = classifier_doc(rct_doc, endpoint="simulated", run=[child, "loneliness@1"])
    [error] = errors_of(doc)
    assert "gated by 'loneliness', which must be listed before it" in error
    other_scope = binary(
        key="child", scope="exchange", gate={"classifier": "loneliness", "levels": ["maybe"]}
    )
    doc = classifier_doc(rct_doc, endpoint="simulated", run=["loneliness@1", other_scope])
    errors = errors_of(doc)
    assert any("whose scope is user_message" in e for e in errors)
    assert any("gate levels maybe are not answers of loneliness@1 (yes, no)" in e for e in errors)


def test_every_study_language_needs_a_question(rct_doc):
    english_only = binary(question={"en": "Is it so?"})
    for level in english_only["output"]["levels"]:
        level["label"] = {"en": level["label"]["en"]}
    doc = classifier_doc(rct_doc, endpoint="simulated", run=[english_only])
    [error] = errors_of(doc)
    assert error.startswith("classifiers.run[0]: no question for study language: pt-br")


@pytest.mark.parametrize(
    "change,expected",
    [
        ({"scope": "window"}, "window_turns: is required when scope is window"),
        ({"window_turns": 4}, "window_turns: only applies when scope is window"),
        ({"gate": {"classifier": "custom", "levels": ["yes"]}}, "cannot gate itself"),
        ({"version": 0}, "version:"),
        ({"judge": {"endpoint": "x", "model": "m", "api_key_env": "SECRET_KEY"}}, "judge"),
    ],
)
def test_definition_errors_name_the_field(change, expected):
    data = copy.deepcopy(binary())
    data.update(change)
    errors = definition_errors(data)
    assert any(expected in e for e in errors), errors
    with pytest.raises(DefinitionError):
        load_definition(data)


def test_reserved_codes_cannot_be_answers():
    data = binary()
    data["output"]["levels"][0]["code"] = "unparseable"
    assert "output.levels[0].code: 'unparseable' is reserved by the platform" in (
        definition_errors(data)
    )


def test_the_definition_hash_ignores_the_title_but_not_the_question():
    base = load_definition(binary())
    assert load_definition(binary(title={"en": "Renamed"})).definition_hash == (
        base.definition_hash
    )
    assert load_definition(binary(question={"en": "Other?"})).definition_hash != (
        base.definition_hash
    )
