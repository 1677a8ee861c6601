"""The protocol's `requirements` section: what validates, and errors with path and line."""

from __future__ import annotations

import pytest

from studyplatform.studies.protocol import parse_protocol_text
from studyplatform.studies.protocol.validate import ProtocolInvalid
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.django_db

BASE = (EXAMPLES / "companion-rct.yaml").read_text()


def errors(section: str) -> list[str]:
    with pytest.raises(ProtocolInvalid) as caught:
        parse_protocol_text(BASE + section)
    return [str(e) for e in caught.value.errors]


def test_a_daily_requirement_with_nudge_and_completion_validates():
    doc = parse_protocol_text(
        BASE
        + """
requirements:
  daily: {active_minutes: 5, messages: 2}
  nudge:
    local_time: "19:00"
    channels: [in_app, email]
    text: {en: "A few minutes today?", pt-br: "Alguns minutos hoje?"}
  completion: {min_days: 24, of_days: 28}
"""
    )
    assert doc["requirements"]["completion"] == {"min_days": 24, "of_days": 28}


def test_daily_and_weekly_together_are_refused_with_the_line():
    found = errors(
        """
requirements:
  daily: {active_minutes: 5}
  weekly: {active_minutes: 60}
"""
    )
    n = BASE.count("\n")
    assert found == [
        f"requirements.weekly: give either a daily or a weekly minimum, not both (line {n + 4})"
    ]


def test_a_completion_rule_must_use_the_minimums_unit_and_fit_the_study():
    n = BASE.count("\n")
    assert errors(
        """
requirements:
  weekly: {messages: 10}
  completion: {min_days: 20, of_days: 28}
"""
    ) == [
        "requirements.completion.min_days: the minimum is weekly: count the completion rule in "
        f"weeks (min_weeks, of_weeks) (line {n + 4})",
        "requirements.completion.of_days: the minimum is weekly: count the completion rule in "
        f"weeks (min_weeks, of_weeks) (line {n + 4})",
        f"requirements.completion.min_weeks: this field is required (line {n + 4})",
        f"requirements.completion.of_weeks: this field is required (line {n + 4})",
    ]
    assert errors(
        """
requirements:
  daily: {active_minutes: 5}
  completion: {min_days: 30, of_days: 29}
"""
    ) == [
        f"requirements.completion.min_days: cannot be more than of_days (29) (line {n + 4})",
        "requirements.completion.of_days: 29 days do not fit in the study's duration_days (28) "
        f"(line {n + 4})",
    ]


def test_a_requirement_needs_a_minimum_and_a_nudge_text_in_every_language():
    n = BASE.count("\n")
    assert errors(
        """
requirements:
  nudge: {local_time: "19:00"}
"""
    ) == [
        "requirements: needs a minimum: daily (e.g. daily: {active_minutes: 5}) or weekly "
        f"(line {n + 2})"
    ]
    assert errors(
        """
requirements:
  daily: {active_minutes: 5}
  nudge: {local_time: "7pm", text: {en: "Hi"}}
"""
    ) == [f"requirements.nudge.local_time: must be a time of day as HH:MM (24-hour) (line {n + 4})"]
    assert errors(
        """
requirements:
  daily: {active_minutes: 0}
  nudge: {local_time: "19:00", text: {en: "Hi"}}
"""
    )[0].startswith("requirements.daily.active_minutes:")
    assert errors(
        """
requirements:
  daily: {active_minutes: 5}
  nudge: {local_time: "19:00", text: {en: "Hi"}}
"""
    ) == [f"requirements.nudge.text: missing text for: pt-br (line {n + 4})"]
