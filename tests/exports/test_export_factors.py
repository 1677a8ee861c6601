"""Factorial studies in exports: one column per factor wherever the arm is exported, the
codebook's value labels for levels (and arms), and k-anonymity suppression carried over."""

from __future__ import annotations

import json

import pytest

from studyplatform.exports import codebook as cb
from studyplatform.studies.protocol.factors import (
    RESERVED_FACTOR_KEYS,
    RESERVED_FACTOR_PREFIXES,
)
from studyplatform.studies.services import study_create_from_protocol
from tests.exports.test_export_dataset import build, columns_of, rows_of, unzip
from tests.factories import launch_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def factorial_study(rct_doc, owner, enroll, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    doc = rct_doc
    template = {k: v for k, v in doc.pop("arms")[0].items() if k not in ("key", "label")}
    doc["factors"] = [
        {
            "key": "modality",
            "label": {"en": "Modality", "pt-br": "Modalidade"},
            "levels": [
                {"key": "text", "label": {"en": "Text", "pt-br": "Texto"}},
                {"key": "voice", "label": {"en": "Voice", "pt-br": "Voz"}},
            ],
        },
        {
            "key": "task",
            "label": {"en": "Task", "pt-br": "Tarefa"},
            "levels": [
                {"key": "personal", "label": {"en": "Personal", "pt-br": "Pessoal"}},
                {"key": "open", "label": {"en": "Open-ended", "pt-br": "Aberta"}},
            ],
        },
    ]
    doc["arms_from_factors"] = template
    doc["allocation"] = {"method": "permuted_blocks", "block_sizes": [8]}
    study = launch_study(study_create_from_protocol(doc=doc, author=owner), owner)
    for i in range(8):
        enroll(study, email=f"f{i}@example.org", signature_name="x")
    return study


def test_participants_and_allocation_carry_one_column_per_factor(factorial_study, owner):
    export = build(factorial_study, owner, format="csv", tables=["participants", "allocation"], k=2)
    files = unzip(export)
    for name in ("participants.csv", "allocation.csv"):
        columns = columns_of(name, files[name])
        # the factor columns follow the arm, in the protocol's factor order
        at = columns.index("arm")
        assert columns[at + 1 : at + 3] == ["modality", "task"]
        rows = rows_of(name, files[name])
        assert len(rows) == 8
        for row in rows:
            assert row["arm"] == f"{row['modality']}_{row['task']}"
    # a block of 8 holds every cell twice
    cells = [r["arm"] for r in rows_of("participants.csv", files["participants.csv"])]
    assert sorted(set(cells)) == ["text_open", "text_personal", "voice_open", "voice_personal"]
    assert all(cells.count(c) == 2 for c in set(cells))


def test_the_codebook_labels_levels_as_it_labels_arms(factorial_study, owner):
    export = build(factorial_study, owner, format="jsonl", tables=["participants"], k=2)
    codebook = json.loads(unzip(export)["codebook.json"])
    columns = {c["name"]: c for c in codebook["tables"]["participants"]["columns"]}
    # ("*" where k-anonymity suppressed the arm, a quasi-identifier by default)
    assert columns["modality"]["allowed"] == ["text", "voice", "*"]
    assert columns["modality"]["value_labels"] == [
        {"value": "text", "label": {"en": "Text", "pt-br": "Texto"}},
        {"value": "voice", "label": {"en": "Voice", "pt-br": "Voz"}},
    ]
    assert "Modality" in columns["modality"]["meaning"]
    # the arm column's labels have the same shape (value, label per language)
    arm_labels = {v["value"]: v["label"] for v in columns["arm"]["value_labels"]}
    assert arm_labels["voice_open"] == {"en": "Voice · Open-ended", "pt-br": "Voz · Aberta"}
    assert set(arm_labels) == set(columns["arm"]["allowed"]) - {"*"}


def test_a_suppressed_arm_suppresses_its_factor_levels_too(factorial_study, owner):
    # given: two participants per arm, so k = 3 over the arm must suppress every arm
    export = build(
        factorial_study, owner, format="jsonl", tables=["participants", "allocation"], k=3
    )
    files = unzip(export)
    for name in ("participants.jsonl", "allocation.jsonl"):
        for row in rows_of(name, files[name]):
            assert row["arm"] == "*"
            # a level would give the arm away (two levels name the cell)
            assert row["modality"] == "*" and row["task"] == "*"
    codebook = json.loads(files["codebook.json"])
    columns = {c["name"]: c for c in codebook["tables"]["participants"]["columns"]}
    assert columns["task"]["suppressed_with"] == ["arm"]


def test_factor_keys_cannot_clash_with_any_participants_or_allocation_column():
    # given: every column the two tables can have, with all options on
    shape = cb.StudyShape(
        dates="relative",
        include_time_of_day=True,
        arms=("a",),
        consent_keys=("agree",),
        screener=(("uses_chatbots", ("yes", "no"), "Used?"),),
    )
    shifted = cb.StudyShape(dates="shifted", include_time_of_day=True)
    names = {
        c.name
        for s in (shape, shifted)
        for table in cb.FACTOR_TABLES
        for c in cb.table_columns(table, s)
    }
    # then: the protocol validator refuses each of them as a factor key
    clashing = {
        n
        for n in names
        if n not in RESERVED_FACTOR_KEYS and not n.startswith(RESERVED_FACTOR_PREFIXES)
    }
    assert clashing == set()
