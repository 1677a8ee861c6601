"""The designer's plain-data helpers: line formats and where validation errors are shown."""

from __future__ import annotations

import pytest

from studyplatform.console.design.text_lines import (
    checkboxes_to_lines,
    flags_to_lines,
    lines_to_checkboxes,
    lines_to_flags,
)


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
