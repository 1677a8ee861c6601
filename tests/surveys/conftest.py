"""Shared fixtures for instrument tests."""

import copy

import pytest
from surveys_custom_instrument import custom_definition


@pytest.fixture
def definition() -> dict:
    return copy.deepcopy(custom_definition())
