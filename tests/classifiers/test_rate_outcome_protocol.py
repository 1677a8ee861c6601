"""Classifier rates as analysis outcomes in the protocol: accepted when a classifier the
protocol runs gives the rate, refused with the path and line otherwise."""

from __future__ import annotations

import pytest

from studyplatform.studies.protocol import ProtocolInvalid, parse_protocol_text, to_yaml
from tests.classifiers.conftest import classifier_doc


def errors_of(text: str) -> list[str]:
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text(text)
    return [str(e) for e in info.value.errors]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def with_outcomes(doc: dict, *extra: str) -> dict:
    doc["analysis"]["outcomes"] = [*doc["analysis"]["outcomes"], *extra]
    return doc


def test_a_rate_of_a_classifier_the_protocol_runs_is_a_valid_outcome(rct_doc):
    doc = classifier_doc(
        rct_doc, endpoint="simulated", run=["sycophancy@1", "affection_user@1", "romance_user@1"]
    )
    with_outcomes(doc, "cls_sycophancy_rate", "cls_romance_user_romantic_rate")
    parsed = parse_protocol_text(to_yaml(doc))
    assert parsed["analysis"]["outcomes"][-2:] == [
        "cls_sycophancy_rate",
        "cls_romance_user_romantic_rate",
    ]


def test_a_rate_of_a_classifier_the_protocol_does_not_run_is_named_with_path_and_line(rct_doc):
    doc = classifier_doc(rct_doc, endpoint="simulated", run=["loneliness@1"])
    text = to_yaml(with_outcomes(doc, "cls_sycophancy_rate"))
    index = len(doc["analysis"]["outcomes"]) - 1
    assert errors_of(text) == [
        f"analysis.outcomes[{index}]: no classifier in classifiers.run gives "
        f"'cls_sycophancy_rate' (rates: cls_loneliness_rate) "
        f"(line {line_of(text, '- cls_sycophancy_rate')})"
    ]


def test_a_categorical_classifier_needs_a_level_in_the_rate_name(rct_doc):
    doc = classifier_doc(rct_doc, endpoint="simulated", run=["affection_user@1", "romance_user@1"])
    text = to_yaml(with_outcomes(doc, "cls_romance_user_rate"))
    [error] = errors_of(text)
    assert "no classifier in classifiers.run gives 'cls_romance_user_rate'" in error
    assert "cls_romance_user_romantic_rate" in error


def test_a_rate_outcome_without_any_classifier_is_refused(rct_doc):
    text = to_yaml(with_outcomes(rct_doc, "cls_sycophancy_rate"))
    [error] = errors_of(text)
    assert error.startswith("analysis.outcomes[")
    assert "the protocol runs no classifiers" in error


def test_a_name_that_is_neither_a_score_nor_a_rate_fails_the_schema(rct_doc):
    doc = classifier_doc(rct_doc, endpoint="simulated", run=["sycophancy@1"])
    [error] = errors_of(to_yaml(with_outcomes(doc, "cls_sycophancy")))
    assert error.startswith("analysis.outcomes[")
