"""Exports for statistical packages: SPSS (.sav), Stata (.dta) and R (CSV + a load.R script).

Pure Python plus pandas and pyreadstat (no Django). Everything an analyst would otherwise type
by hand comes from the codebook's Column list: variable labels (the column's meaning), value
labels (a string column's `allowed` values, booleans as 0/1), and the missing-value code for a
quasi-identifier suppressed for k-anonymity. The layout (file names of the variables and the
integer codes) is a pure function of the columns, so the writer, the read-back used by the
disclosure check and the codebook entry agree without passing state around.

Coding rules, the same for SPSS and Stata so one syntax file works on both:
- A string column with listed `allowed` values is written as a number: 1, 2, ... in the
  codebook's order, labelled with the value. The suppression mark `*` becomes the missing code
  -9 in SPSS (a declared user-missing value, labelled) and `.s` in Stata (an extended missing
  value). If the data hold a value the codebook does not list, the column is written as text
  instead (no codes that the codebook does not document) and the codebook says so.
- Booleans are 0/1 labelled false/true. Integers and numbers are doubles (system missing where
  empty). Other strings stay strings; SPSS and Stata have no missing string, so empty is "".
- Variable names: SPSS allows 64 bytes, Stata 32 characters of [A-Za-z_][A-Za-z0-9_]*. Names
  are made from [A-Za-z0-9_], start with a letter, avoid both packages' reserved words, are
  unique ignoring case, and a name that is too long is cut and given a hash of the full name.
  Every renamed column is listed in the codebook (`name_in_file`).
- Long text: Stata strings over 2045 bytes are written as strL (pyreadstat picks it); SPSS
  strings are limited to 32767 bytes, so a longer cell is cut there and counted in the codebook.

R: pyreadr can write a data frame with factors, but not variable labels (its var.labels are
always empty) and it writes a missing number as NaN rather than NA, so R users get the CSV
files and a base-R script (no packages) that reads them with the right column classes and sets
factor levels, attr(x, "label") and the NA codes.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyreadstat

from .codebook import Column
from .disclosure import SUPPRESSED

STAT_FORMATS = ("sav", "dta", "r")
SPSS_SUPPRESSED = -9
STATA_SUPPRESSED = "s"  # read as .s in Stata
NAME_LIMIT = {"sav": 64, "dta": 32}
SPSS_STRING_BYTES = 32767
SPSS_LABEL_BYTES = 256  # readstat cuts longer variable labels itself, possibly mid-character
SPSS_VALUE_LABEL_BYTES = 120
STATA_LABEL_CHARS = 80  # Stata refuses longer variable and file labels
SUPPRESSED_LABEL = "suppressed for k-anonymity"
# Words neither package accepts as a variable name (SPSS's reserved keywords and Stata's).
RESERVED = {
    "all",
    "and",
    "by",
    "eq",
    "ge",
    "gt",
    "le",
    "lt",
    "ne",
    "not",
    "or",
    "to",
    "with",
    "_all",
    "_b",
    "_coef",
    "_cons",
    "_n",
    "_pi",
    "_pred",
    "_rc",
    "_skip",
    "byte",
    "double",
    "float",
    "if",
    "in",
    "int",
    "long",
    "str",
    "strl",
    "using",
}


@dataclass(frozen=True)
class Variable:
    """How one codebook column is stored in a .sav/.dta file."""

    column: Column
    file_name: str
    kind: str  # "code", "boolean", "number" or "string"
    codes: dict[str, int] = field(default_factory=dict)  # value -> code, for "code"
    # Value labels: code -> label for "code", the value itself -> label for a "number" with
    # labelled values (an instrument item's options).
    labels: dict[float, str] = field(default_factory=dict)

    @property
    def suppressible(self) -> bool:
        return bool(self.column.carries) or SUPPRESSED in self.column.allowed


def _clean_name(name: str, limit: int) -> str:
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not clean or not clean[0].isalpha():
        clean = "v" + clean
    if clean.lower() in RESERVED:
        clean += "_v"
    if len(clean) > limit:
        # Cut, then a hash of the full name, so two long names that share a prefix stay apart.
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:6]
        clean = f"{clean[: limit - 7]}_{digest}"
    return clean


def file_names(columns: Sequence[Column], fmt: str) -> dict[str, str]:
    """Column name -> variable name in a .sav/.dta file (unchanged where already valid)."""
    limit = NAME_LIMIT[fmt]
    taken: set[str] = set()
    out: dict[str, str] = {}
    for column in columns:
        candidate = _clean_name(column.name, limit)
        number = 2
        base = candidate
        while candidate.lower() in taken:
            suffix = f"_{number}"
            candidate = base[: limit - len(suffix)] + suffix
            number += 1
        taken.add(candidate.lower())
        out[column.name] = candidate
    return out


def layout(columns: Sequence[Column], fmt: str) -> list[Variable]:
    """The variables of one file, in the codebook's column order."""
    names = file_names(columns, fmt)
    variables = []
    for column in columns:
        if column.type == "string" and column.allowed:
            listed = [str(v) for v in column.allowed if v != SUPPRESSED]
            codes = {value: number for number, value in enumerate(listed, start=1)}
            # A value's own label where the codebook has one (an option's text, a factor level's
            # label), else the value. Labels that do not tell values apart (arms a participant
            # sees under one blinded label, "Assistant") keep the value in front.
            named = column.english_labels()
            given = [named.get(value, value) for value in codes]
            distinct = len(set(given)) == len(given)
            labels = {
                float(code): _code_label(value, named.get(value, value), distinct)
                for value, code in codes.items()
            }
            variables.append(Variable(column, names[column.name], "code", codes, labels))
        elif column.type == "boolean":
            labels = {0.0: "false", 1.0: "true"}
            variables.append(Variable(column, names[column.name], "boolean", labels=labels))
        elif column.type in ("integer", "number"):
            labels = {float(value): label for value, label in column.english_labels().items()}
            if not all(value.is_integer() for value in labels):
                # Stata labels whole numbers only; such options stay in the codebook's labels.
                labels = {}
            variables.append(Variable(column, names[column.name], "number", labels=labels))
        else:
            variables.append(Variable(column, names[column.name], "string"))
    return variables


def _cut_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def _cut_label(text: str, fmt: str) -> str:
    if fmt == "dta":
        return text if len(text) <= STATA_LABEL_CHARS else text[: STATA_LABEL_CHARS - 3] + "..."
    if len(text.encode("utf-8")) <= SPSS_LABEL_BYTES:
        return text
    return _cut_bytes(text, SPSS_LABEL_BYTES - 3) + "..."


def _missing_code(fmt: str) -> Any:
    return SPSS_SUPPRESSED if fmt == "sav" else STATA_SUPPRESSED


@dataclass
class WriteNotes:
    """What the data made the writer do beyond the layout: recorded in the codebook."""

    uncoded: list[str] = field(default_factory=list)  # coded columns written as text instead
    cut_cells: dict[str, int] = field(default_factory=dict)  # SPSS strings cut at 32767 bytes


def write_frame(
    fmt: str,
    path: Path,
    columns: Sequence[Column],
    data: Mapping[str, list[Any]],
    *,
    file_label: str = "",
) -> WriteNotes:
    """Write one table (column name -> plain values, None for empty) as .sav or .dta."""
    notes = WriteNotes()
    frame: dict[str, pd.Series] = {}
    labels: dict[str, str] = {}
    value_labels: dict[str, dict[float, str]] = {}
    missing: dict[str, list[Any]] = {}
    measure: dict[str, str] = {}
    formats: dict[str, str] = {}
    for var in layout(columns, fmt):
        values = data[var.column.name]
        name = var.file_name
        labels[name] = _cut_label(var.column.meaning, fmt)
        kind = var.kind
        if kind == "code" and any(
            v is not None and v != SUPPRESSED and str(v) not in var.codes for v in values
        ):
            notes.uncoded.append(var.column.name)
            kind = "string"
        if kind == "code":
            coded: list[Any] = []
            for value in values:
                if value is None:
                    coded.append(math.nan)
                elif value == SUPPRESSED:
                    coded.append(_missing_code(fmt))
                else:
                    coded.append(float(var.codes[str(value)]))
            labelled = dict(var.labels)
            if var.suppressible:
                missing[name] = [_missing_code(fmt)]
                if fmt == "sav":
                    labelled[float(SPSS_SUPPRESSED)] = SUPPRESSED_LABEL
            value_labels[name] = labelled
            # Stata's .s sits in a numeric column as a letter, so that column is mixed; only
            # then, as pyreadstat takes a mixed column without a letter for text.
            mixed = fmt == "dta" and STATA_SUPPRESSED in coded
            frame[name] = pd.Series(coded, dtype=object if mixed else "float64")
            measure[name], formats[name] = "nominal", "F8.0"
        elif kind == "boolean":
            frame[name] = pd.Series(
                [math.nan if v is None else float(bool(v)) for v in values], dtype="float64"
            )
            value_labels[name] = dict(var.labels)
            measure[name], formats[name] = "nominal", "F1.0"
        elif kind == "number":
            frame[name] = pd.Series(
                [math.nan if v is None else float(v) for v in values], dtype="float64"
            )
            measure[name] = "scale"
            if var.column.type == "integer":
                formats[name] = "F12.0"
            if var.labels:
                # Labelled values are answer options: SPSS and Stata show the option text.
                value_labels[name] = dict(var.labels)
                measure[name] = "ordinal"
        else:
            texts = ["" if v is None else str(v) for v in values]
            if fmt == "sav":
                cut = [_cut_bytes(t, SPSS_STRING_BYTES) for t in texts]
                changed = sum(1 for a, b in zip(texts, cut, strict=True) if a != b)
                if changed:
                    notes.cut_cells[var.column.name] = changed
                texts = cut
            frame[name] = pd.Series(texts, dtype=object)
            measure[name] = "nominal"
    df = pd.DataFrame(frame, columns=[v.file_name for v in layout(columns, fmt)])
    if fmt == "sav":
        # SPSS keeps 120 bytes of a value label; cut here so the cut is on a character boundary.
        value_labels = {
            name: {k: _cut_bytes(v, SPSS_VALUE_LABEL_BYTES) for k, v in by_value.items()}
            for name, by_value in value_labels.items()
        }
        pyreadstat.write_sav(
            df,
            str(path),
            file_label=_cut_bytes(file_label, 64),
            column_labels=labels,
            variable_value_labels=value_labels,
            missing_ranges=missing,
            variable_measure=measure,
            variable_format=formats,
        )
    elif fmt == "dta":
        pyreadstat.write_dta(
            df,
            str(path),
            file_label=_cut_label(file_label, "dta"),
            column_labels=labels,
            variable_value_labels=value_labels,
            missing_user_values=missing,
        )
    else:
        raise ValueError(f"{fmt!r} is not a statistical-package file format")
    return notes


def read_frame_rows(fmt: str, path: Path, columns: Sequence[Column]) -> Iterator[dict[str, Any]]:
    """The rows of a .sav/.dta file decoded back to the codebook's values (codes to their
    values, the missing code to `*`, 0/1 to booleans, "" to None), batch by batch, under the
    codebook's column names; a variable the layout does not expect shows under its own name."""
    reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
    variables = {v.file_name: v for v in layout(columns, fmt)}
    for frame, meta in pyreadstat.read_file_in_chunks(
        reader, str(path), chunksize=2000, user_missing=True
    ):
        types = meta.readstat_variable_types
        decoders = {name: _decoder(variables.get(name), types[name]) for name in frame.columns}
        for record in frame.to_dict("records"):
            row = {}
            for name, value in record.items():
                var = variables.get(name)
                row[var.column.name if var else name] = decoders[name](value)
            yield row


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _decoder(var: Variable | None, stored: str):
    def text(value: Any) -> Any:
        return None if _is_empty(value) or value == "" else str(value)

    if var is None or stored == "string":
        # A coded column written as text (the data held an unlisted value) reads as text.
        return text
    if var.kind == "code":
        values = {code: value for value, code in var.codes.items()}

        def code(value: Any) -> Any:
            if _is_empty(value):
                return None
            if value in (SPSS_SUPPRESSED, STATA_SUPPRESSED):
                return SUPPRESSED
            return values.get(int(value), value)

        return code
    if var.kind == "boolean":
        return lambda value: None if _is_empty(value) else bool(value)
    if var.column.type == "integer":
        return lambda value: None if _is_empty(value) else int(value)
    return lambda value: None if _is_empty(value) else float(value)


def _code_label(value: str, label: str, distinct: bool) -> str:
    if label == value or distinct:
        return label
    return f"{value} ({label})"


def _key(value: float) -> str:
    """A JSON key for a labelled value: 1.0 -> "1", 0.5 stays "0.5"."""
    return str(int(value)) if float(value).is_integer() else str(value)


def codebook_entry(var: Variable, fmt: str, notes: WriteNotes | None) -> dict[str, Any]:
    """What the codebook adds to a column for this format: its name in the file, the value
    labels by code and the missing-value codes."""
    out: dict[str, Any] = {}
    name = var.column.name
    if fmt in ("sav", "dta") and var.file_name != name:
        out["name_in_file"] = var.file_name
    uncoded = notes is not None and name in notes.uncoded
    if var.kind == "code" and not uncoded:
        if fmt == "r":
            out["factor_levels"] = list(var.codes)
        else:
            out["codes"] = {_key(code): label for code, label in var.labels.items()}
    elif var.kind == "code":
        out["coding_note"] = (
            "Written as text: the data held a value the codebook does not list, so no codes."
        )
    if var.kind == "boolean" and fmt in ("sav", "dta"):
        out["codes"] = {_key(code): label for code, label in var.labels.items()}
    if var.kind == "number" and var.labels:
        # The same in R, as attr(x, "labels") (the convention haven and labelled read).
        out["codes"] = {_key(value): label for value, label in var.labels.items()}
    if var.suppressible and (var.kind == "code" and not uncoded):
        code = {"sav": str(SPSS_SUPPRESSED), "dta": ".s", "r": "NA"}[fmt]
        out["missing_codes"] = {code: SUPPRESSED_LABEL}
    elif var.suppressible and var.kind == "string" and fmt == "r":
        out["missing_codes"] = {"NA": f"{SUPPRESSED_LABEL} ('{SUPPRESSED}' in the CSV)"}
    if notes is not None and name in notes.cut_cells:
        out["cells_cut"] = notes.cut_cells[name]
    return out


FORMAT_NOTES = {
    "sav": (
        "SPSS .sav files. Categories are numeric codes with value labels (codes); "
        f"{SPSS_SUPPRESSED} is a declared user-missing value meaning '{SUPPRESSED_LABEL}'; "
        "booleans are 0/1; an empty number is system-missing and an empty text is blank. "
        "Variables renamed to fit SPSS naming rules list their name_in_file. Text longer than "
        f"{SPSS_STRING_BYTES} bytes is cut there (cells_cut counts them)."
    ),
    "dta": (
        "Stata .dta files (version 15). Categories are numeric codes with value labels "
        f"(codes); .s is the extended missing value meaning '{SUPPRESSED_LABEL}'; "
        "booleans are 0/1; an empty number is '.', an empty text is \"\". Text longer than 2045 "
        "bytes is stored as strL. Variables renamed to fit Stata naming rules (32 characters, "
        "letters, digits and _) list their name_in_file. Variable labels are cut at 80 "
        "characters (the full meaning is here)."
    ),
    "r": (
        "CSV files and load.R, a base-R script that reads them with the right column types and "
        "sets each column's label (attr 'label'), the categories' factor levels (factor_levels) "
        f"and NA for empty cells and for '{SUPPRESSED}' ({SUPPRESSED_LABEL}) in categories and "
        "in columns suppressed with a quasi-identifier."
    ),
}


def annotate_codebook(
    codebook: dict[str, Any],
    fmt: str,
    columns: Mapping[str, Sequence[Column]],
    notes: Mapping[str, WriteNotes],
) -> None:
    """Add each column's storage in this format to codebook.json, and a note on the format."""
    if fmt not in STAT_FORMATS:
        return
    for table, info in codebook["tables"].items():
        variables = layout(columns[table], "sav" if fmt == "r" else fmt)
        for entry, var in zip(info["columns"], variables, strict=True):
            entry.update(codebook_entry(var, fmt, notes.get(table)))
    codebook["file_format"] = {"format": fmt, "notes": FORMAT_NOTES[fmt]}
    if fmt == "r":
        codebook["file_format"]["script"] = R_SCRIPT


# ---- the items table: one row per response, one column per instrument item


def _english(label: Mapping[str, str] | None, fallback: Any) -> str:
    label = dict(label or {})
    return label.get("en") or next(iter(label.values()), None) or str(fallback)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def items_columns(
    instruments: Mapping[str, Sequence[Any]],
    texts: Mapping[tuple[str, str], str],
) -> tuple[list[Column], dict[tuple[str, str], str]]:
    """The columns of the wide items table, and (instrument key, item id) -> column name.

    `instruments` maps each instrument key to its items (surveys.instruments.Item); `texts`
    holds the item wording only where its licence lets us redistribute it. An item
    column is named after the item id, or `<instrument>.<item id>` where two instruments share
    an id. Items with numeric answers are numbers, labelled with their options' text where they
    have options; single choices with text values are categories (coded in SPSS/Stata);
    anything else (multiple choice as a JSON list, free text through the anonymizer) is text."""
    head = [
        Column("response_id", "string", "Response pseudonym (joins responses and answers)."),
        Column("participant_id", "string", "Participant pseudonym."),
        Column("instrument", "string", "Instrument key (see instruments)."),
    ]
    seen: dict[str, int] = {}
    for items in instruments.values():
        for item in items:
            seen[item.id] = seen.get(item.id, 0) + 1
    taken = {c.name for c in head}
    columns = list(head)
    names: dict[tuple[str, str], str] = {}
    for key in sorted(instruments):
        for item in instruments[key]:
            name = item.id
            if seen[item.id] > 1 or name in taken:
                name = f"{key}.{item.id}"
            taken.add(name)
            names[(key, item.id)] = name
            text = texts.get((key, item.id), "")
            meaning = f"{key} item {item.id} ({item.type})" + (f": {text}" if text else ".")
            options = tuple(item.options)
            if item.is_numeric:
                labels = tuple(
                    (o.value, {"en": _english(o.label, o.value)})
                    for o in options
                    if _is_number(o.value)
                )
                columns.append(Column(name, "number", meaning, value_labels=labels))
            elif item.type == "single_choice" and options:
                allowed = tuple(str(o.value) for o in options)
                labels = tuple((str(o.value), {"en": _english(o.label, o.value)}) for o in options)
                columns.append(
                    Column(name, "string", meaning, allowed=allowed, value_labels=labels)
                )
            else:
                columns.append(Column(name, "string", meaning, free_text=True))
    return columns, names


# ---- R

R_SCRIPT = "load.R"
_R_CLASSES = {"string": "character", "integer": "integer", "number": "numeric"}


def _r_string(text: str) -> str:
    """An R string literal in plain ASCII (non-ASCII as \\u{...}), whatever the locale."""
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 32 or ord(char) > 126:
            out.append(f"\\u{{{ord(char):04x}}}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _r_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _r_vector(values: Sequence[str]) -> str:
    return "c(" + ", ".join(_r_string(v) for v in values) + ")"


def r_script(
    study_title: str, tables: Mapping[str, str], columns: Mapping[str, Sequence[Column]]
) -> str:
    """load.R for the CSV files `tables` (table -> file name): base R only."""
    lines = [
        f"# Reads the anonymized dataset {study_title!r} into R with the codebook's labels.",
        "# Generated with the export; see codebook.json for what every column means.",
        "# Usage, with the unzipped export as the working directory:",
        '#   source("load.R")            # -> a list `export` of data frames, one per file',
        "#   participants <- export$participants",
        "# Each column has attr(x, 'label') (its meaning); categories are factors with the",
        "# codebook's levels; empty cells are NA, and so is '*' (suppressed for k-anonymity)",
        "# in categories and in columns suppressed with a quasi-identifier.",
        "",
        'if (!exists("export_dir")) export_dir <- "."',
        ".export_read <- function(file, classes) {",
        '  read.csv(file.path(export_dir, file), colClasses = classes, na.strings = "",',
        '           fileEncoding = "UTF-8", check.names = FALSE, stringsAsFactors = FALSE)',
        "}",
        ".export_logical <- function(x) {",
        '  out <- ifelse(x == "true", TRUE, ifelse(x == "false", FALSE, NA))',
        '  out[x %in% "*"] <- NA',
        "  out",
        "}",
        ".export_suppressed <- function(x) {",
        '  x[x %in% "*"] <- NA',
        "  x",
        "}",
        "# A value the codebook does not list stays text (with a warning) rather than becoming NA.",
        ".export_factor <- function(x, levels, column) {",
        "  x <- .export_suppressed(x)",
        "  unlisted <- setdiff(unique(x[!is.na(x)]), levels)",
        "  if (length(unlisted) > 0) {",
        '    warning(column, ": values not in the codebook, kept as text: ",',
        '            paste(unlisted, collapse = ", "))',
        "    return(x)",
        "  }",
        "  factor(x, levels = levels)",
        "}",
        "export <- list()",
    ]
    for table, file_name in tables.items():
        cols = columns[table]
        # Booleans arrive as text ("true"/"false", or '*' where suppressed): converted below.
        classes = [
            f"{_r_string(c.name)} = {_r_string(_R_CLASSES.get(c.type, 'character'))}" for c in cols
        ]
        # A suppressed number is written empty, but a suppressed integer or number column of a
        # text file is never '*': only text columns need the '*' conversion.
        lines += ["", f"# {table}: {file_name}", f"d <- .export_read({_r_string(file_name)}, c("]
        lines += [f"  {c}," for c in classes[:-1]] + [f"  {classes[-1]}", "))"]
        for var in layout(cols, "sav"):
            ref = f"d[[{_r_string(var.column.name)}]]"
            if var.kind == "code":
                levels = _r_vector(list(var.codes))
                lines.append(
                    f"{ref} <- .export_factor({ref}, {levels}, {_r_string(var.column.name)})"
                )
            elif var.kind == "boolean":
                lines.append(f"{ref} <- .export_logical({ref})")
            elif var.kind == "string" and var.suppressible and not var.column.free_text:
                lines.append(f"{ref} <- .export_suppressed({ref})")
            elif var.kind == "number" and var.labels:
                values = ", ".join(_r_number(v) for v in var.labels)
                lines.append(
                    f'attr({ref}, "labels") <- setNames(c({values}), '
                    f"{_r_vector(list(var.labels.values()))})"
                )
            lines.append(f'attr({ref}, "label") <- {_r_string(var.column.meaning)}')
        lines.append(f"export[[{_r_string(table)}]] <- d")
    lines += ["rm(d)", ""]
    return "\n".join(lines)
