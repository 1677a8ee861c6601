"""SPSS, Stata and R files of one table: written from the codebook's columns and read back with
each package's own metadata (pyreadstat; Rscript for R), so labels, codes and missing values are
checked as an analyst's software sees them. No database."""

from __future__ import annotations

import re
import shutil
import subprocess

import pyreadstat
import pytest

from studyplatform.exports.codebook import Column
from studyplatform.exports.disclosure import DisclosurePlan
from studyplatform.exports.statfiles import (
    R_SCRIPT,
    SPSS_STRING_BYTES,
    file_names,
    items_columns,
    r_script,
)
from studyplatform.exports.writers import read_rows, write_table

LONG_A = "usage_waves_mean_reply_latency_ms_within_participant_over_the_window"
LONG_B = "usage_waves_mean_reply_latency_ms_within_participant_over_the_window_lag"
COLUMNS = [
    Column("participant_id", "string", "Participant pseudonym."),
    Column(
        "arm",
        "string",
        "Randomized arm (condition).",
        allowed=("control", "companion", "*"),
        carries=("arm",),
    ),
    Column("age_band", "string", "Age band.", allowed=("18-27", "28-37")),
    Column("shares_chats", "boolean", "Consents to share chats."),
    Column("block_number", "integer", "Randomization block.", carries=("arm",)),
    Column("ucla3.total", "number", "Survey score ucla3.total."),
    Column("model_requested", "string", "Model asked for.", carries=("arm",)),
    Column("text", "string", "Message text, anonymized.", free_text=True),
    Column("scores", "string", "JSON object: score name -> value."),
    Column(LONG_A, "number", "First long name."),
    Column(LONG_B, "number", "Second long name, same first 64 characters."),
    Column("Text", "string", "A name that differs from another only in case."),
]
ROWS = [
    {
        "participant_id": "p_1",
        "arm": "companion",
        "age_band": "18-27",
        "shares_chats": True,
        "block_number": 3,
        "ucla3.total": 6.5,
        "model_requested": "gpt-x",
        "text": "Olá, [PERSON_1]! " + "é" * 3000,
        "scores": {"total": 6},
        LONG_A: 1.0,
        LONG_B: 2.0,
        "Text": "a",
    },
    {
        "participant_id": "p_2",
        "arm": "control",
        "age_band": None,
        "shares_chats": False,
        "block_number": None,
        "ucla3.total": None,
        "model_requested": None,
        "text": None,
        "scores": None,
        LONG_A: None,
        LONG_B: None,
        "Text": None,
    },
]
# p_3's arm is suppressed for k-anonymity: the plan blanks every column that carries it.
SUPPRESSED_ROW = {**ROWS[0], "participant_id": "p_3", "text": "short"}
PLAN = DisclosurePlan(suppressed={"p_3": frozenset({"arm"})})


def write(fmt, tmp_path, rows=None, columns=COLUMNS):
    path = tmp_path / f"t.{fmt}"
    notes: dict = {}
    count = write_table(
        fmt,
        path,
        columns,
        [rows if rows is not None else [*ROWS, SUPPRESSED_ROW]],
        disclosure=PLAN,
        file_label="Study: participants",
        notes=notes,
    )
    return path, count, notes.get("t")


def test_names_are_valid_unique_and_short_enough_for_spss_and_stata():
    # given / when
    for fmt, limit in (("sav", 64), ("dta", 32)):
        names = file_names(COLUMNS, fmt)
        # then: every name fits the format's rules, none collide ignoring case
        assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n) for n in names.values())
        assert all(len(n) <= limit for n in names.values())
        assert len({n.lower() for n in names.values()}) == len(COLUMNS)
        # and valid names are kept, others renamed the same way every time
        assert names["participant_id"] == "participant_id"
        assert names["ucla3.total"] == "ucla3_total"
        assert names == file_names(COLUMNS, fmt)
        assert names["Text"] != names["text"]
    assert file_names([Column("with", "string", "x")], "dta") == {"with": "with_v"}
    assert file_names([Column("1st", "string", "x")], "sav") == {"1st": "v1st"}


def test_a_sav_file_carries_variable_labels_value_labels_and_the_suppression_code(tmp_path):
    # given / when: three rows, one with a suppressed arm
    path, count, notes = write("sav", tmp_path)
    frame, meta = pyreadstat.read_sav(str(path), user_missing=True)
    names = file_names(COLUMNS, "sav")
    # then: SPSS sees the codebook's meanings as variable labels, under the documented names
    assert count == 3
    assert meta.column_names == [names[c.name] for c in COLUMNS]
    assert meta.column_labels == [c.meaning for c in COLUMNS]
    assert meta.file_label == "Study: participants"
    # and categories are codes labelled with the values, -9 a user-missing "suppressed"
    arm = names["arm"]
    assert meta.variable_value_labels[arm] == {
        1.0: "control",
        2.0: "companion",
        -9.0: "suppressed for k-anonymity",
    }
    assert meta.missing_ranges[arm] == [{"lo": -9.0, "hi": -9.0}]
    assert "age_band" not in meta.missing_ranges  # not suppressible in this table
    assert meta.variable_value_labels["shares_chats"] == {0.0: "false", 1.0: "true"}
    assert frame[arm].tolist() == [2.0, 1.0, -9.0]
    assert frame["shares_chats"].tolist() == [1.0, 0.0, 1.0]
    assert meta.variable_measure[arm] == "nominal"
    assert meta.variable_measure["ucla3_total"] == "scale"
    # and the suppressed participant's carrying columns are blank, free text is kept
    assert frame["block_number"].isna().tolist() == [False, True, True]
    assert frame["model_requested"].tolist() == ["gpt-x", "", "*"]
    assert frame["text"].tolist()[2] == "short"
    assert frame["text"].tolist()[0] == ROWS[0]["text"]
    assert notes.uncoded == [] and notes.cut_cells == {}


def test_a_dta_file_carries_labels_the_extended_missing_code_and_long_text_as_strl(tmp_path):
    # given: a message far longer than Stata's str2045
    long_text = "x" * 5000
    rows = [{**ROWS[0], "text": long_text}, ROWS[1], SUPPRESSED_ROW]
    # when
    path, _, _ = write("dta", tmp_path, rows)
    frame, meta = pyreadstat.read_dta(str(path), user_missing=True)
    names = file_names(COLUMNS, "dta")
    # then: Stata names, labels and codes
    assert meta.column_names == [names[c.name] for c in COLUMNS]
    assert meta.column_labels == [c.meaning for c in COLUMNS]
    arm = names["arm"]
    assert meta.variable_value_labels[arm] == {1: "control", 2: "companion"}
    assert meta.missing_user_values[arm] == ["s"]
    assert frame[arm].tolist() == [2, 1, "s"]
    # and the long text is whole (strL)
    assert frame["text"].tolist()[0] == long_text
    assert meta.variable_storage_width["text"] == 0  # strL


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_reading_a_file_back_gives_the_rows_as_written(tmp_path, fmt):
    # given / when
    path, _, _ = write(fmt, tmp_path)
    rows = list(read_rows(fmt, path, COLUMNS))
    # then: the codebook's names and values come back (suppression applied, JSON as text)
    assert rows[0] == {**ROWS[0], "scores": '{"total": 6}'}
    assert rows[1] == ROWS[1]
    assert rows[2]["arm"] == "*"
    assert rows[2]["block_number"] is None and rows[2]["model_requested"] == "*"


def test_an_unlisted_category_is_written_as_text_and_reported(tmp_path):
    # given: an age band the codebook does not list
    rows = [{**ROWS[0], "age_band": "38-47"}]
    # when
    path, _, notes = write("sav", tmp_path, rows)
    frame, meta = pyreadstat.read_sav(str(path))
    # then: no undocumented code is invented; the value is kept as text and noted
    assert frame["age_band"].tolist() == ["38-47"]
    assert "age_band" not in meta.variable_value_labels
    assert notes.uncoded == ["age_band"]
    assert next(read_rows("sav", path, COLUMNS))["age_band"] == "38-47"


def test_spss_text_longer_than_the_format_allows_is_cut_and_counted(tmp_path):
    # given: a 40,000-byte imported message
    rows = [{**ROWS[0], "text": "y" * 40_000}]
    # when
    path, _, notes = write("sav", tmp_path, rows)
    frame, _ = pyreadstat.read_sav(str(path))
    # then
    assert len(frame["text"].tolist()[0]) == SPSS_STRING_BYTES
    assert notes.cut_cells == {"text": 1}


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not on PATH")
def test_the_r_script_reads_the_csv_with_labels_factor_levels_and_na_codes(tmp_path):
    # given: the CSV of the table and its load.R
    write_table(
        "r", tmp_path / "participants.csv", COLUMNS, [[*ROWS, SUPPRESSED_ROW]], disclosure=PLAN
    )
    script = r_script(
        'Estudo ação "1"', {"participants": "participants.csv"}, {"participants": COLUMNS}
    )
    (tmp_path / R_SCRIPT).write_text(script, encoding="utf-8")
    probe = """
    source("load.R")
    d <- export$participants
    cat("levels:", levels(d$arm), "\\n")
    cat("arm:", as.character(d$arm), "\\n")
    cat("label:", attr(d$arm, "label"), "\\n")
    cat("label_long:", attr(d[["ucla3.total"]], "label"), "\\n")
    cat("age_levels:", levels(d$age_band), "\\n")
    cat("shares:", d$shares_chats, "\\n")
    cat("class_block:", class(d$block_number), "\\n")
    cat("block:", d$block_number, "\\n")
    cat("model:", d$model_requested, "\\n")
    cat("text_nchar:", nchar(d$text[1]), "\\n")
    cat("text_start:", substr(d$text[1], 1, 12), "\\n")
    """
    # when
    result = subprocess.run(
        ["Rscript", "-e", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    )
    # then
    assert result.returncode == 0, result.stderr
    out = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert out["levels"].split() == ["control", "companion"]
    assert out["arm"].split() == ["companion", "control", "NA"]
    assert out["label"].strip() == "Randomized arm (condition)."
    assert out["label_long"].strip() == "Survey score ucla3.total."
    assert out["age_levels"].split() == ["18-27", "28-37"]
    assert out["shares"].split() == ["TRUE", "FALSE", "TRUE"]
    assert out["class_block"].strip() == "integer"
    assert out["block"].split() == ["3", "NA", "NA"]
    assert out["model"].split() == ["gpt-x", "NA", "NA"]
    assert int(out["text_nchar"]) == len(ROWS[0]["text"])
    assert out["text_start"].strip() == "Olá, [PERSON"


@pytest.mark.parametrize("fmt", ["sav", "dta"])
@pytest.mark.parametrize(
    "rows",
    [[], [dict.fromkeys(ROWS[0])], [{**dict.fromkeys(ROWS[0]), "participant_id": "p_3"}]],
    ids=["no-rows", "all-empty", "only-suppressed"],
)
def test_an_empty_table_still_has_its_variables_labels_and_codes(tmp_path, fmt, rows):
    # given / when: a table without rows, or with one row of nothing but empty cells (but for a
    # participant whose arm is suppressed: '*' is then the only value the arm has)
    path, count, _ = write(fmt, tmp_path, rows)
    frame, meta = read_with_metadata(fmt, path)
    # then: every variable is there with its label and its value labels
    names = file_names(COLUMNS, fmt)
    assert count == len(rows) == len(frame)
    assert meta.column_names == [names[c.name] for c in COLUMNS]
    assert meta.column_labels == [c.meaning for c in COLUMNS]
    assert set(meta.variable_value_labels[names["arm"]].values()) >= {"control", "companion"}
    expected = [dict.fromkeys(c.name for c in COLUMNS)] * len(rows)
    if rows and rows[0]["participant_id"] == "p_3":
        expected = [{**expected[0], "participant_id": "p_3", "arm": "*", "model_requested": "*"}]
    assert list(read_rows(fmt, path, COLUMNS)) == expected


def read_with_metadata(fmt, path):
    reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
    return reader(str(path), user_missing=True)


def test_the_items_table_labels_options_and_keeps_shared_item_ids_apart(tmp_path):
    # given: two instruments that share an item id, a text-valued choice and a free-text item
    from surveys.instruments import Item, Option

    freq = (Option(1, {"en": "Hardly ever"}), Option(2, {"en": "Often", "pt-BR": "Frequente"}))
    instruments = {
        "mood": [
            Item("q1", "likert", None, freq),
            Item("where", "single_choice", None, (Option("home", {"en": "At home"}),)),
            Item("note", "free_text", None),
        ],
        "sleep": [Item("q1", "likert", None, freq)],
    }
    # when
    columns, names = items_columns(instruments, {("mood", "q1"): "Licensed wording"})
    # then: a shared id is prefixed with its instrument, a unique one kept
    assert names == {
        ("mood", "q1"): "mood.q1",
        ("mood", "where"): "where",
        ("mood", "note"): "note",
        ("sleep", "q1"): "sleep.q1",
    }
    by_name = {c.name: c for c in columns}
    assert by_name["mood.q1"].meaning == "mood item q1 (likert): Licensed wording"
    assert by_name["sleep.q1"].meaning == "sleep item q1 (likert)."  # no wording without licence
    # and written to SPSS, options are value labels in their English text
    rows = [{"response_id": "r_1", "mood.q1": 2.0, "where": "home", "note": "[PERSON_1] ok"}]
    path = tmp_path / "items.sav"
    write_table("sav", path, columns, [rows], disclosure=None)
    _, meta = pyreadstat.read_sav(str(path))
    sav = file_names(columns, "sav")
    assert meta.variable_value_labels[sav["mood.q1"]] == {1.0: "Hardly ever", 2.0: "Often"}
    assert meta.variable_value_labels[sav["where"]] == {1.0: "At home"}
    assert sav["note"] not in meta.variable_value_labels
    assert next(read_rows("sav", path, columns))["where"] == "home"


def test_options_with_fractional_values_are_not_value_labels_in_any_format(tmp_path):
    # given: a numeric item whose options are halves (Stata labels whole numbers only)
    halves = ((0.5, {"en": "half"}), (1, {"en": "one"}))
    column = Column("dose", "number", "Dose.", value_labels=halves)
    for fmt in ("sav", "dta"):
        path = tmp_path / f"t.{fmt}"
        # when
        write_table(fmt, path, [column], [[{"dose": 0.5}]], disclosure=None)
        frame, meta = read_with_metadata(fmt, path)
        # then: the file is written, the value intact, no labels
        assert frame["dose"].tolist() == [0.5]
        assert meta.variable_value_labels == {}
