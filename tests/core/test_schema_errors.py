"""Protocols and survey instruments word their schema errors the same way (core/schema_errors)."""

from __future__ import annotations

import copy

import pytest

from studyplatform.studies.protocol import ProtocolInvalid, parse_protocol_data
from surveys.instruments import validate_instrument_dict
from tests.conftest import example_doc
from tests.surveys.surveys_custom_instrument import custom_definition


@pytest.fixture
def definition() -> dict:
    return copy.deepcopy(custom_definition())


def protocol_errors(doc: dict) -> list[str]:
    with pytest.raises(ProtocolInvalid) as caught:
        parse_protocol_data(doc)
    return [f"{e.path}: {e.message}" for e in caught.value.errors]


def test_a_missing_field_reads_the_same_in_a_protocol_and_an_instrument(definition):
    # given: a protocol arm without its model, and an instrument item without its options
    doc = example_doc()
    del doc["arms"][1]["model"]
    del definition["items"][4]["options"]
    # then: both name the missing field's own path, in the same words
    assert "arms[1].model: this field is required" in protocol_errors(doc)
    assert validate_instrument_dict(definition) == ["items[4].options: this field is required"]


def test_an_unknown_field_and_a_wrong_choice_read_the_same(definition):
    doc = example_doc()
    doc["arms"][0]["temprature"] = 0.5
    doc["allocation"]["method"] = "coin"
    definition["items"][0]["colour"] = "red"
    definition["items"][1]["type"] = "ranking"
    protocol = protocol_errors(doc)
    assert "arms[0].temprature: unknown field" in protocol
    assert any(e.startswith("allocation.method: must be one of: simple, ") for e in protocol)
    instrument = validate_instrument_dict(definition)
    assert "items[0].colour: unknown field" in instrument
    assert any(e.startswith("items[1].type: must be one of: likert, ") for e in instrument)
