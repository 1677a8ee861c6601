"""The whole export as SPSS, Stata and R files: every table read back with the package's own
metadata and compared with the codebook in the same zip and with the same export as JSON Lines
(the key reused, so pseudonyms match)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile

import pyreadstat
import pytest

from studyplatform.exports.codebook import TABLES
from studyplatform.exports.models import DatasetExport
from studyplatform.exports.writers import read_rows
from tests.exports import test_export_dataset as base
from tests.exports.test_export_dataset import URL, build, rows_of, unzip

# The cohort of the end-to-end export tests (vault identifiers in chats, answers and imports).
world = base.world

pytestmark = pytest.mark.django_db

FULL = {"include_time_of_day": True, "chat_mode": "metadata", "tables": list(TABLES)}


def read_with_metadata(fmt, path):
    reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
    return reader(str(path), user_missing=True)


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_an_spss_or_stata_export_holds_the_same_data_with_the_codebooks_labels(
    world, owner, tmp_path, fmt
):
    # given: the full export as JSON Lines (k = 5 over five participants: cells suppressed)
    study, _ = world
    reference = build(study, owner, format="jsonl", **FULL)
    # when: the same export in the statistical format, with the same pseudonym key
    export = build(study, owner, format=fmt, reuse_key_of=reference.pk, **FULL)
    files = unzip(export)
    reference_files = unzip(reference)
    codebook = json.loads(files["codebook.json"])
    # then: one file per table, documented in the codebook
    assert codebook["file_format"]["format"] == fmt
    assert sorted(n for n in files if n.endswith("." + fmt)) == sorted(
        t["file"] for t in codebook["tables"].values()
    )
    suppression_seen = False
    for table, info in codebook["tables"].items():
        path = tmp_path / info["file"]
        path.write_bytes(files[info["file"]])
        frame, meta = read_with_metadata(fmt, path)
        described = info["columns"]
        # the variables are the codebook's columns, renamed where the codebook says so
        assert meta.column_names == [c.get("name_in_file", c["name"]) for c in described]
        assert meta.number_rows == info["rows"] or (info["rows"] == 0 and not len(frame))
        for column, label in zip(described, meta.column_labels, strict=True):
            name = column.get("name_in_file", column["name"])
            # the variable label is the column's meaning (cut to Stata's 80 characters or
            # SPSS's 256 bytes, with "...", where longer; the codebook has it whole)
            limit = 80 if fmt == "dta" else 256
            if len(column["meaning"].encode()) > limit:
                assert label.endswith("...") and len(label.encode()) <= limit
                assert column["meaning"].startswith(label[:-3]), (table, name)
            else:
                assert label == column["meaning"], (table, name)
            # value labels and missing codes are the codebook's
            expected = {float(k): v for k, v in column.get("codes", {}).items()}
            missing = column.get("missing_codes", {})
            if fmt == "sav" and "-9" in missing:
                expected[-9.0] = missing["-9"]
                assert meta.missing_ranges[name] == [{"lo": -9.0, "hi": -9.0}]
            if fmt == "dta" and ".s" in missing:
                assert meta.missing_user_values[name] == ["s"]
            assert meta.variable_value_labels.get(name, {}) == expected, (table, name)
            if missing:
                codes = frame[name].tolist()
                suppression_seen |= -9.0 in codes or "s" in codes
        # and decoding the codes gives exactly the rows of the JSON Lines export
        columns = [_column(c) for c in described]
        decoded = list(read_rows(fmt, path, columns))
        if table == "items":
            expected_rows = items_from_answers(
                rows_of("answers.jsonl", reference_files["answers.jsonl"]), described
            )
        else:
            expected_rows = rows_of(f"{table}.jsonl", reference_files[f"{table}.jsonl"])
        assert decoded == expected_rows, table
    # the fixture's small cohort forces suppression, so the missing code was exercised
    assert suppression_seen
    participants = {c["name"]: c for c in codebook["tables"]["participants"]["columns"]}
    # arms share the label participants see ("Assistant"), so each code's label keeps its key
    arm_codes = participants["arm"]["codes"].values()
    assert {label.split(" (")[0] for label in arm_codes} == {a.key for a in study.arms.all()}
    assert participants["shares_chats"]["codes"] == {"0": "false", "1": "true"}
    # and the items table labels each answer with its option's text (UCLA-3's published key)
    items = {c["name"]: c for c in codebook["tables"]["items"]["columns"]}
    assert items["ucla3_1"]["codes"] == {
        "1": "Hardly ever",
        "2": "Some of the time",
        "3": "Often",
    }
    assert "comment" not in items  # not an item of the instrument: in answers only
    # and the export README says how to open the files
    readme = files["README.md"].decode()
    assert "## File format" in readme
    assert ("GET FILE" if fmt == "sav" else "use participants.dta") in readme


def items_from_answers(answers, described):
    """The wide items rows the long answers table implies (one row per response)."""
    names = [c["name"] for c in described]
    numeric = {c["name"] for c in described if c["type"] == "number"}
    rows: dict[str, dict] = {}
    for answer in answers:
        row = rows.setdefault(
            answer["response_id"],
            {
                **dict.fromkeys(names),
                "response_id": answer["response_id"],
                "participant_id": answer["participant_id"],
                "instrument": answer["instrument"],
            },
        )
        item = answer["item_id"]
        if item in names:
            row[item] = answer["value_number"] if item in numeric else answer["value_text"]
    return list(rows.values())


def _column(entry):
    from studyplatform.exports.codebook import Column

    allowed = tuple(entry["allowed"])
    carries = tuple(entry.get("suppressed_with", ()))
    labels = tuple((item["value"], item["label"]) for item in entry.get("value_labels", ()))
    return Column(
        entry["name"],
        entry["type"],
        entry["meaning"],
        allowed=allowed,
        carries=carries,
        value_labels=labels,
    )


def test_a_usage_score_with_a_dot_is_renamed_for_stata_and_the_rename_documented(
    world, owner, tmp_path
):
    # given / when: usage_waves has a column per outcome score ("<instrument>.<score>")
    study, _ = world
    export = build(study, owner, format="dta", tables=["participants", "usage_waves"])
    files = unzip(export)
    waves = json.loads(files["codebook.json"])["tables"]["usage_waves"]["columns"]
    # then: every dotted name has a Stata name in the codebook and in the file
    renamed = {c["name"]: c["name_in_file"] for c in waves if "name_in_file" in c}
    dotted = [c["name"] for c in waves if "." in c["name"]]
    assert dotted and set(dotted) <= set(renamed)
    (tmp_path / "w.dta").write_bytes(files["usage_waves.dta"])
    _, meta = pyreadstat.read_dta(str(tmp_path / "w.dta"), metadataonly=True)
    assert set(renamed.values()) <= set(meta.column_names)
    assert all(len(name) <= 32 for name in meta.column_names)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not on PATH")
def test_the_r_export_loads_in_r_with_labels_and_factor_levels_from_the_codebook(
    world, owner, tmp_path
):
    # given: the full export for R
    study, _ = world
    export = build(study, owner, format="r", **FULL)
    with zipfile.ZipFile(io.BytesIO(unzip_bytes(export))) as archive:
        archive.extractall(tmp_path)
    codebook = json.loads((tmp_path / "codebook.json").read_text())
    assert codebook["file_format"]["script"] == "load.R"
    # when: R sources the script and prints, per column, its label, class and levels
    probe = """
    source("load.R")
    for (table in names(export)) {
      d <- export[[table]]
      cat("ROWS", table, nrow(d), "\\n", sep = "\\t")
      for (column in names(d)) {
        x <- d[[column]]
        cat("COL", table, column, class(x)[1], paste(levels(x), collapse = "|"),
            sum(is.na(x)), gsub("\\n", " ", attr(x, "label")), "\\n", sep = "\\t")
      }
    }
    """
    result = subprocess.run(
        ["Rscript", "-e", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    seen = {}
    rows = {}
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "ROWS":
            rows[parts[1]] = int(parts[2])
        elif parts[0] == "COL":
            seen[(parts[1], parts[2])] = parts[3:7]
    # then: every table and column of the codebook, with its meaning as label
    assert rows == {t: info["rows"] for t, info in codebook["tables"].items()}
    for table, info in codebook["tables"].items():
        for column in info["columns"]:
            r_class, levels, _nas, label = seen[(table, column["name"])]
            assert label.strip() == column["meaning"].replace("\n", " "), (table, column["name"])
            if "factor_levels" in column:
                assert r_class == "factor"
                assert levels.split("|") == column["factor_levels"]
            elif column["type"] == "boolean":
                assert r_class == "logical"
            elif column["type"] == "integer":
                assert r_class == "integer"
            elif column["type"] == "number":
                assert r_class == "numeric"
    # and the suppressed arm is NA in R, not a level
    participants = json.loads((tmp_path / "codebook.json").read_text())["tables"]["participants"]
    arm = next(c for c in participants["columns"] if c["name"] == "arm")
    assert "*" not in arm["factor_levels"]
    assert arm["missing_codes"] == {"NA": "suppressed for k-anonymity"}


def unzip_bytes(export: DatasetExport) -> bytes:
    from studyplatform.exports.services import export_path

    return export_path(export).read_bytes()


def test_the_api_builds_an_spss_export_and_refuses_an_unknown_format_naming_the_field(
    world, member_of, api_as, django_capture_on_commit_callbacks
):
    # given: an analyst of the study
    study, _ = world
    client = api_as(member_of(study, "analyst"))
    # when: they ask for a format that does not exist
    refused = client.post(URL.format(slug=study.slug), {"format": "xlsx"}, format="json")
    # then: 400 naming the field, nothing written
    assert refused.status_code == 400
    assert "format" in refused.json()
    assert not DatasetExport.objects.exists()
    # when: they ask for SPSS
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(URL.format(slug=study.slug), {"format": "sav"}, format="json")
    # then: the export job builds .sav files into the same archive
    assert created.status_code == 201, created.content
    export = DatasetExport.objects.get()
    assert export.status == DatasetExport.Status.DONE, export.error
    names = set(unzip(export))
    assert {"participants.sav", "messages.sav", "codebook.json", "manifest.json"} <= names


def test_the_console_export_form_offers_the_statistical_formats_and_builds_one(
    recruiting_study, owner, client, enroll, django_capture_on_commit_callbacks
):
    # given: a study with a participant, and its owner on the console's exports page
    enroll(recruiting_study)
    client.force_login(owner)
    page = client.get(f"/console/{recruiting_study.slug}/exports/").content.decode()
    # then: the format list has SPSS, Stata and R
    for fmt in ("sav", "dta", "r"):
        assert f"<option>{fmt}</option>" in page
    # when: they ask for Stata
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/console/{recruiting_study.slug}/exports/",
            {
                "tables": ["participants"],
                "format": "dta",
                "dates": "relative",
                "chat_mode": "exclude",
                "k": "2",
            },
        )
    # then: the export job wrote a labelled .dta into the zip
    export = DatasetExport.objects.get(study=recruiting_study)
    assert export.status == "done", export.error
    files = unzip(export)
    assert {"participants.dta", "codebook.json", "README.md", "manifest.json"} == set(files)
    assert json.loads(files["codebook.json"])["file_format"]["format"] == "dta"
