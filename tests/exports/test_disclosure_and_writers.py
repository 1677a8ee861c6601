"""Pure parts of the export: age bands, k-anonymity with cell suppression, keyed pseudonyms and
the batch writers (no database)."""

from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from studyplatform.exports.codebook import Column
from studyplatform.exports.disclosure import age_band, k_anonymize
from studyplatform.exports.pseudonyms import Pseudonymizer, key_fingerprint, new_key
from studyplatform.exports.writers import write_table


@pytest.mark.parametrize(
    ("age", "band"),
    [(18, "10-19"), (30, "30-39"), (39, "30-39"), (89, "80-89"), (90, "90+"), (104, "90+")],
)
def test_ages_become_ten_year_bands_with_ninety_and_over_grouped(age, band):
    assert age_band(age) == band


def test_a_missing_or_non_numeric_age_has_no_band():
    assert age_band(None) is None
    assert age_band("thirty") is None
    assert age_band(True) is None


def classes(rows, qis):
    return Counter(tuple(r[q] for q in qis) for r in rows)


def test_rare_combinations_are_suppressed_until_every_class_has_k_rows():
    # given: four women in their thirties in arm a, and two singletons
    qis = ["age_band", "gender", "arm"]
    rows = [{"age_band": "30-39", "gender": "woman", "arm": "a"} for _ in range(4)]
    rows += [
        {"age_band": "40-49", "gender": "woman", "arm": "a"},
        {"age_band": "90+", "gender": "man", "arm": "a"},
    ]
    # when
    out, report = k_anonymize(rows, qis, k=2)
    # then: the singletons lose their most varied value first (age), then gender
    assert min(classes(out, qis).values()) >= 2
    assert out[:4] == rows[:4]  # rows already safe are untouched
    assert out[4:] == [
        {"age_band": "*", "gender": "*", "arm": "a"},
        {"age_band": "*", "gender": "*", "arm": "a"},
    ]
    assert report.suppressed_cells == {"age_band": 2, "gender": 2, "arm": 0}
    assert report.satisfied and report.smallest_class == 2 and report.equivalence_classes == 2
    assert rows[4]["age_band"] == "40-49"  # the input is not modified


def test_a_fully_suppressed_remainder_smaller_than_k_absorbs_the_smallest_class():
    # given: one unique row in every column, and a class of three
    qis = ["gender", "arm"]
    rows = [{"gender": "man", "arm": "a"}] * 3 + [{"gender": "other", "arm": "b"}]
    # when
    out, report = k_anonymize(rows, qis, k=3)
    # then: the single fully suppressed row cannot stand alone, so the class of three joins it
    assert all(r == {"gender": "*", "arm": "*"} for r in out)
    assert report.rows_fully_suppressed == 4 and report.satisfied


def test_fewer_rows_than_k_is_reported_as_unreachable():
    out, report = k_anonymize([{"gender": "man"}, {"gender": "woman"}], ["gender"], k=5)
    assert [r["gender"] for r in out] == ["*", "*"]
    assert report.satisfied is False and report.smallest_class == 2


def test_pseudonyms_are_stable_under_one_key_and_unrelated_under_another():
    key, other = new_key(), new_key()
    pseudo = Pseudonymizer(key)
    assert pseudo("participant", 7) == pseudo("participant", 7)
    assert pseudo("participant", 7).startswith("p_") and len(pseudo("participant", 7)) == 18
    assert pseudo("participant", 7) != Pseudonymizer(other)("participant", 7)
    assert pseudo("participant", 7)[2:] != pseudo("message", 7)[2:]
    assert pseudo("message", None) is None
    assert key_fingerprint(key) != key.hex() and len(key_fingerprint(key)) == 64
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


COLUMNS = [
    Column("id", "string", "id"),
    Column("n", "integer", "count"),
    Column("x", "number", "value"),
    Column("ok", "boolean", "flag"),
    Column("scores", "string", "json"),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_writers_write_every_batch_with_the_declared_columns(tmp_path, fmt):
    # given: three batches, one of them empty
    batches = [
        [{"id": "a", "n": 1, "x": 0.5, "ok": True, "scores": {"total": 3}}],
        [],
        [{"id": "b", "n": None, "x": None, "ok": False, "scores": None}],
    ]
    path = tmp_path / f"t.{fmt}"
    # when
    count = write_table(fmt, path, COLUMNS, iter(batches), disclosure=None)
    # then
    assert count == 2
    if fmt == "csv":
        assert path.read_text().splitlines() == [
            "id,n,x,ok,scores",
            'a,1,0.5,true,"{""total"": 3}"',
            "b,,,false,",
        ]
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert rows[0] == {"id": "a", "n": 1, "x": 0.5, "ok": True, "scores": '{"total": 3}'}
    else:
        table = pq.read_table(io.BytesIO(path.read_bytes()))
        assert table.schema.names == [c.name for c in COLUMNS]
        assert table.to_pylist()[1] == {
            "id": "b",
            "n": None,
            "x": None,
            "ok": False,
            "scores": None,
        }


def test_an_empty_table_still_has_its_header(tmp_path):
    path = tmp_path / "t.parquet"
    assert write_table("parquet", path, COLUMNS, iter([[]]), disclosure=None) == 0
    assert pq.read_schema(path).names == [c.name for c in COLUMNS]
