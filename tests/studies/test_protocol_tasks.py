"""Validation of the protocol's `tasks` section: each error names the path and the line."""

from __future__ import annotations

import copy

import pytest

from studyplatform.studies.protocol import ProtocolInvalid, parse_protocol_text, to_yaml


def line_of(text: str, needle: str, start: int = 1) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if i >= start and needle in line)


def errors_of(doc: dict) -> tuple[list[str], str]:
    text = to_yaml(doc)
    with pytest.raises(ProtocolInvalid) as info:
        parse_protocol_text(text)
    return [str(e) for e in info.value.errors], text


@pytest.fixture
def tasks_doc(rct_doc) -> dict:
    doc = copy.deepcopy(rct_doc)
    doc["tasks"] = [
        {
            "key": "personal",
            "rule": "random",
            "open_new_conversation": True,
            "items": [
                {"key": "grateful", "text": {"en": "Grateful?", "pt-br": "Grato?"}},
                {"key": "friend", "text": {"en": "A friend?", "pt-br": "Um amigo?"}},
            ],
        }
    ]
    doc["arms"][0]["tasks"] = "personal"
    return doc


def test_a_valid_tasks_section_and_arm_reference_validate(tasks_doc):
    doc = parse_protocol_text(to_yaml(tasks_doc))
    assert doc["tasks"][0]["items"][1]["key"] == "friend"
    assert doc["arms"][0]["tasks"] == "personal"


def test_an_arm_naming_an_unknown_task_list_is_reported_with_the_known_lists(tasks_doc):
    tasks_doc["arms"][1]["tasks"] = "personnal"
    errors, text = errors_of(tasks_doc)
    assert errors == [
        "arms[1].tasks: no task list with key 'personnal' (task lists: personal) "
        f"(line {line_of(text, 'tasks: personnal')})"
    ]


def test_an_item_missing_a_study_language_is_reported(tasks_doc):
    del tasks_doc["tasks"][0]["items"][1]["text"]["pt-br"]
    errors, text = errors_of(tasks_doc)
    text_line = line_of(text, "A friend?") - 1  # the item's "text:" line
    assert errors == [f"tasks[0].items[1].text: missing text for: pt-br (line {text_line})"]


def test_duplicate_item_keys_are_reported(tasks_doc):
    tasks_doc["tasks"][0]["items"][1]["key"] = "grateful"
    errors, text = errors_of(tasks_doc)
    second = line_of(text, "key: grateful", line_of(text, "key: grateful") + 1)
    assert errors == [f"tasks[0].items[1].key: duplicate key (line {second})"]


def test_a_by_date_list_needs_a_date_on_every_item_and_no_date_twice(tasks_doc):
    items = tasks_doc["tasks"][0]["items"]
    tasks_doc["tasks"][0]["rule"] = "by_date"
    items[0]["date"] = "2026-03-02"
    items.append({"key": "third", "text": {"en": "x", "pt-br": "y"}, "date": "2026-03-02"})
    errors, text = errors_of(tasks_doc)
    assert errors == [
        "tasks[0].items[1].date: is required when the list's rule is by_date "
        f"(line {line_of(text, 'key: friend')})",
        "tasks[0].items[2].date: another item of this list (items[0]) is already for "
        f"2026-03-02 (line {line_of(text, 'date:', line_of(text, 'key: third'))})",
    ]


def test_a_date_on_an_item_of_a_list_that_is_not_by_date_is_reported(tasks_doc):
    tasks_doc["tasks"][0]["items"][0]["date"] = "2026-03-02"
    errors, text = errors_of(tasks_doc)
    assert errors == [
        "tasks[0].items[0].date: only applies when the list's rule is by_date (this list's "
        f"rule is random); remove it (line {line_of(text, 'date: ')})"
    ]


def test_an_impossible_date_is_reported(tasks_doc):
    tasks_doc["tasks"][0]["rule"] = "by_date"
    tasks_doc["tasks"][0]["items"][0]["date"] = "2026-02-30"
    tasks_doc["tasks"][0]["items"][1]["date"] = "2026-03-01"
    errors, text = errors_of(tasks_doc)
    assert errors == [
        "tasks[0].items[0].date: '2026-02-30' is not a calendar date "
        f"(line {line_of(text, '2026-02-30')})"
    ]


def test_an_unknown_rule_lists_the_rules(tasks_doc):
    tasks_doc["tasks"][0]["rule"] = "daily"
    errors, text = errors_of(tasks_doc)
    assert errors == [
        "tasks[0].rule: must be one of: in_order, random, by_date "
        f"(line {line_of(text, 'rule: daily')})"
    ]
