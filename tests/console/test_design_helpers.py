"""The designer's plain-data helpers: line formats and where validation errors are shown."""

from __future__ import annotations

import pytest

from studyplatform.console.design.errors import ErrorPlace, locate_error
from studyplatform.console.design.text_lines import (
    checkboxes_to_lines,
    flags_to_lines,
    lines_to_checkboxes,
    lines_to_flags,
)
from studyplatform.studies.protocol import validate_document


def test_flag_lines_round_trip_with_numbers_as_plain_json():
    flags = lines_to_flags("phq9 | phq9_9 | >= | 1.0 | high\ngad7 | gad7_1 | > | 2.5")
    assert flags == [
        {"instrument": "phq9", "item": "phq9_9", "op": ">=", "value": 1, "severity": "high"},
        {"instrument": "gad7", "item": "gad7_1", "op": ">", "value": 2.5},
    ]
    assert lines_to_flags(flags_to_lines(flags)) == flags


def test_flag_lines_name_the_bad_line():
    with pytest.raises(ValueError, match="line 2: the value must be a number"):
        lines_to_flags("phq9 | phq9_9 | >= | 1\nphq9 | phq9_9 | >= | many")


def test_checkbox_lines_round_trip_and_name_the_bad_line():
    boxes = lines_to_checkboxes("agree | I agree | required\n\ncontact | Contact me | optional")
    assert boxes == [
        {"key": "agree", "label": "I agree", "required": True},
        {"key": "contact", "label": "Contact me", "required": False},
    ]
    assert lines_to_checkboxes(checkboxes_to_lines(boxes)) == boxes
    with pytest.raises(ValueError, match="line 1: the third part must be required or optional"):
        lines_to_checkboxes("agree | I agree | maybe")


# --- where validation errors are shown ------------------------------------------------------------


def _placed(doc: dict) -> dict[tuple, ErrorPlace]:
    """Each error the validator finds in `doc`, by place, mapped to where the designer shows it."""
    return {error.parts: locate_error(error.parts, doc) for error in validate_document(doc)}


@pytest.mark.django_db
def test_an_arm_model_error_lands_on_that_arms_model_fields(rct_doc):
    del rct_doc["arms"][1]["model"]["endpoint"]
    rct_doc["arms"][0]["parameters"]["temperature"] = 9
    placed = _placed(rct_doc)
    assert placed[("arms", 1, "model", "endpoint")] == ErrorPlace("arms", 1, "endpoint")
    assert placed[("arms", 0, "parameters", "temperature")] == ErrorPlace("arms", 0, "temperature")
    assert locate_error(("arms", 0, "model", "name"), rct_doc) == ErrorPlace(
        "arms", 0, "model_name"
    )


@pytest.mark.django_db
def test_a_survey_schedule_error_lands_on_that_entrys_rule_or_reminder_field(rct_doc):
    rct_doc["surveys"]["schedule"][1]["rule"]["at"] = "25:00"
    rct_doc["surveys"]["schedule"][2]["rule"]["type"] = "hourly"
    placed = _placed(rct_doc)
    assert placed[("surveys", "schedule", 1, "rule", "at")] == ErrorPlace("schedule", 1, "at")
    assert placed[("surveys", "schedule", 2, "rule", "type")] == ErrorPlace(
        "schedule", 2, "rule_type"
    )
    rct_doc["surveys"]["schedule"][1]["rule"]["at"] = "18:00"
    rct_doc["surveys"]["schedule"][2]["rule"]["type"] = "random_ema"
    rct_doc["surveys"]["schedule"][1]["window_hours"] = 24
    rct_doc["surveys"]["schedule"][1]["reminders"] = {"offsets_hours": [30]}
    placed = _placed(rct_doc)
    assert placed[("surveys", "schedule", 1, "reminders", "offsets_hours", 0)] == ErrorPlace(
        "schedule", 1, "reminder_offsets"
    )


@pytest.mark.django_db
def test_a_consent_text_error_lands_on_the_field_of_that_documents_language(rct_doc):
    documents = rct_doc["consent"]["documents"]
    # Put Portuguese first so that a document's index and its language's field name differ.
    documents.reverse()
    assert documents[0]["language"] == "pt-br"
    documents[0]["title"] = ""
    documents[1]["body"] = ""
    placed = _placed(rct_doc)
    assert placed[("consent", "documents", 0, "title")] == ErrorPlace(
        "consent", None, "title_pt_br"
    )
    assert placed[("consent", "documents", 1, "body")] == ErrorPlace("consent", None, "body_en")


def test_places_outside_the_forms_go_to_the_yaml_editor_or_their_section(rct_doc):
    assert locate_error((), rct_doc) == ErrorPlace("yaml")
    assert locate_error(("format",), rct_doc) == ErrorPlace("yaml")
    assert locate_error(("change_note",), rct_doc) == ErrorPlace("change_note")
    assert locate_error(("surveys", "instruments", 0, "items[1].text"), rct_doc) == ErrorPlace(
        "schedule"
    )
    assert locate_error(("safety", "crisis_resources", "pt-br"), rct_doc) == ErrorPlace(
        "safety", None, "crisis_en"
    )
