"""Protocol validation: every error names the path, says what is wrong, and gives the line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from studyplatform.studies.models import ConsentDocument, ProtocolVersion, Study
from studyplatform.studies.protocol import (
    ProtocolError,
    ProtocolInvalid,
    parse_protocol_text,
    to_yaml,
)
from studyplatform.studies.protocol.yaml_lines import path_text

ROOT = Path(__file__).resolve().parents[2]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text(text)
    return [str(e) for e in info.value.errors]


def yaml_of(doc: dict) -> str:
    return to_yaml(doc)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_missing_required_field_is_named_with_its_path_and_line(rct_doc):
    del rct_doc["arms"][1]["model"]
    text = yaml_of(rct_doc)
    # the error points at the arm that lacks the field: its first line ("- key: current")
    assert errors_of(text) == [
        f"arms[1].model: this field is required (line {line_of(text, 'key: current')})"
    ]


def test_a_wrong_type_says_what_type_is_expected(rct_doc):
    rct_doc["study"]["duration_days"] = "four weeks"
    text = yaml_of(rct_doc)
    assert errors_of(text) == [
        f"study.duration_days: must be a whole number (line {line_of(text, 'duration_days')})"
    ]


def test_an_unknown_field_is_reported(rct_doc):
    rct_doc["arms"][0]["temprature"] = 0.2
    text = yaml_of(rct_doc)
    assert errors_of(text) == [
        f"arms[0].temprature: unknown field (line {line_of(text, 'temprature')})"
    ]


def test_an_enum_lists_the_valid_choices(rct_doc):
    rct_doc["allocation"]["method"] = "blocks"
    text = yaml_of(rct_doc)
    assert errors_of(text) == [
        "allocation.method: must be one of: simple, permuted_blocks, stratified_blocks "
        f"(line {line_of(text, 'method: blocks')})"
    ]


def test_a_schedule_rule_needs_the_fields_of_its_type(rct_doc):
    del rct_doc["surveys"]["schedule"][1]["rule"]["every_days"]
    rct_doc["surveys"]["schedule"][1]["rule"]["at"] = "25:00"
    errors = errors_of(yaml_of(rct_doc))
    assert any(
        e.startswith("surveys.schedule[1].rule.every_days: this field is required") for e in errors
    )
    assert any(
        e.startswith("surveys.schedule[1].rule.at: must be a time of day as HH:MM") for e in errors
    )


def test_a_yaml_syntax_error_gives_its_line():
    text = "format: studyplatform/v1\nstudy:\n  slug: x\n  title: [unclosed\n"
    [error] = errors_of(text)
    assert error.startswith("document: invalid YAML")
    assert error.endswith("(line 5)") or error.endswith("(line 4)")


def test_duplicate_keys_in_yaml_are_rejected():
    text = "format: studyplatform/v1\nformat: studyplatform/v1\n"
    assert errors_of(text) == ["format: duplicate key (line 2)"]


def test_an_unknown_time_zone_is_rejected(rct_doc):
    rct_doc["study"]["timezone"] = "Mars/Olympus"
    text = yaml_of(rct_doc)
    assert errors_of(text) == [
        "study.timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as "
        f"America/Sao_Paulo) (line {line_of(text, 'timezone')})"
    ]


def test_duplicate_arm_keys_are_rejected(rct_doc):
    rct_doc["arms"][1]["key"] = "legacy"
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith("arms[1].key: duplicate key")


def test_block_sizes_must_fit_the_arm_weights(rct_doc):
    rct_doc["arms"][0]["weight"] = 2  # total weight 3
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith(
        "allocation.block_sizes[0]: must be a multiple of the arms' total weight (3)"
    )


def test_strata_must_be_screener_questions(rct_doc):
    rct_doc["allocation"]["strata"] = ["shoe_size"]
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith("allocation.strata[0]: no screener question with key 'shoe_size'")


def test_every_study_language_needs_a_consent_document(rct_doc):
    rct_doc["consent"]["documents"] = rct_doc["consent"]["documents"][:1]
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith("consent.documents: no consent document for study language 'pt-br'")


def test_crisis_resources_are_required_in_every_language(rct_doc):
    del rct_doc["safety"]["crisis_resources"]["pt-br"]
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith("safety.crisis_resources: missing text for: pt-br")


def test_eligibility_rules_must_refer_to_questions(rct_doc):
    rct_doc["screener"]["eligibility"][0]["question"] = "height"
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith(
        "screener.eligibility[0].question: no screener question with key 'height'"
    )


def test_ema_prompts_must_fit_their_window(rct_doc):
    rule = rct_doc["surveys"]["schedule"][2]["rule"]
    rule.update(per_day=5, between=["09:00", "12:00"], min_gap_minutes=90)
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith(
        "surveys.schedule[2].rule.min_gap_minutes: 5 prompts 90 minutes "
        "apart do not fit in a 180-minute window"
    )


def test_the_document_must_be_a_mapping():
    assert errors_of("- just\n- a list\n") == [
        "document: the protocol must be a mapping of sections (format, study, arms, consent, "
        "safety, ...) (line 1)"
    ]


def test_cli_validate_prints_one_line_per_error_and_exits_1(tmp_path, rct_doc):
    del rct_doc["arms"][1]["model"]
    rct_doc["study"]["duration_days"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_of(rct_doc))
    result = subprocess.run(
        [sys.executable, "manage.py", "protocol", "validate", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    text = path.read_text()
    assert sorted(lines) == sorted(
        [
            f"arms[1].model: this field is required (line {line_of(text, 'key: current')})",
            f"study.duration_days: must be at least 1 (line {line_of(text, 'duration_days')})",
        ]
    )


def test_cli_validate_accepts_both_examples(settings):
    # given: the platform registers the examples' endpoint in its environment
    env = {**os.environ, "MODEL_ENDPOINTS": json.dumps(settings.MODEL_ENDPOINTS)}
    for name in ("companion-rct", "companion-cohort"):
        result = subprocess.run(
            [sys.executable, "manage.py", "protocol", "validate", f"examples/{name}.yaml"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"examples/{name}.yaml: valid"


@pytest.mark.django_db
def test_an_invalid_import_writes_nothing(tmp_path, rct_doc, capsys):
    from django.core.management import call_command

    rct_doc["arms"][0]["model"]["endpoint"] = "nope"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(rct_doc))
    with pytest.raises(SystemExit) as exit_info:
        call_command("protocol", "import", str(path))
    assert exit_info.value.code == 1
    assert Study.objects.count() == 0
    assert ProtocolVersion.objects.count() == 0
    assert ConsentDocument.objects.count() == 0


def test_schedule_instruments_must_exist(rct_doc):
    rct_doc["surveys"]["schedule"][0]["instruments"] = ["who5", "who6"]
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith("surveys.schedule[0].instruments[1]: unknown instrument 'who6'")


def test_outcomes_must_name_a_real_score(rct_doc):
    rct_doc["analysis"]["outcomes"] = ["who5.percent"]
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith(
        "analysis.outcomes[0]: who5 has no score 'percent' (scores: percentage, raw)"
    )


def test_safety_flags_must_name_a_real_item(rct_doc):
    rct_doc["safety"]["flag_items"][0]["item"] = "phq9_10"
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith("safety.flag_items[0].item: phq9 has no item 'phq9_10'")


def test_custom_instrument_errors_carry_their_path_inside_the_protocol(rct_doc):
    rct_doc["surveys"]["instruments"] = [{"key": "mine"}]
    errors = errors_of(yaml_of(rct_doc))
    assert errors and all(e.startswith("surveys.instruments[0]") for e in errors)


# --- structured error places (ProtocolError.parts) ------------------------------------------------


def parts_of(text: str) -> list[tuple]:
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text(text)
    for error in info.value.errors:
        # The readable path is the same place: one source, never two that can disagree.
        assert error.path == path_text(error.parts)
    return [error.parts for error in info.value.errors]


@pytest.mark.django_db
def test_errors_carry_their_place_as_keys_and_indexes(rct_doc):
    rct_doc["surveys"]["schedule"][1]["rule"]["at"] = "25:00"
    for box in rct_doc["consent"]["documents"][1]["checkboxes"]:
        box["required"] = False
    rct_doc["study"]["timezone"] = "Mars/Olympus"
    del rct_doc["arms"][0]["model"]["endpoint"]
    structural = parts_of(yaml_of(rct_doc))
    assert ("arms", 0, "model", "endpoint") in structural
    assert ("surveys", "schedule", 1, "rule", "at") in structural
    # meaning checks run once the structure is right
    rct_doc["surveys"]["schedule"][1]["rule"]["at"] = "18:00"
    rct_doc["arms"][0]["model"]["endpoint"] = "openai"
    assert set(parts_of(yaml_of(rct_doc))) >= {
        ("study", "timezone"),
        ("consent", "documents", 1, "checkboxes"),
    }


def test_a_yaml_duplicate_key_has_its_place_and_line():
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text("format: studyplatform/v1\nstudy:\n  slug: a\n  slug: b\n")
    [error] = info.value.errors
    assert (error.parts, error.line) == (("study", "slug"), 4)


def test_a_protocol_error_refuses_a_dotted_string_place():
    with pytest.raises(TypeError):
        ProtocolError("arms[0].key", "duplicate key")


def test_the_analysis_model_options_are_validated(rct_doc):
    # given: the plan's model options (analysis/plan.py) with valid values
    rct_doc["analysis"].update(
        time="spline", usage_transform="rank", lagged_outcome="adjust", random_slope=False
    )
    # then: the protocol parses
    parse_protocol_text(yaml_of(rct_doc))
    # and so does the change model's adjustment for usage before t - 2, but not a bad value
    rct_doc["analysis"].update(lagged_outcome="change", previous_usage="adjust")
    parse_protocol_text(yaml_of(rct_doc))
    rct_doc["analysis"]["previous_usage"] = "yes"
    assert errors_of(yaml_of(rct_doc))[0].startswith("analysis.previous_usage:")
    del rct_doc["analysis"]["previous_usage"]
    # and an unknown transform is named with its path
    rct_doc["analysis"]["usage_transform"] = "sqrt"
    errors = errors_of(yaml_of(rct_doc))
    assert errors[0].startswith("analysis.usage_transform:")
