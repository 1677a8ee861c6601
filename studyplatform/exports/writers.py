"""Table writers for dataset exports: CSV, Parquet (pyarrow), JSON Lines, and for statistical
packages SPSS .sav, Stata .dta and R (CSV read by a generated load.R; statfiles.py).

Pure Python plus pyarrow (no Django). Rows arrive in batches (lists of dicts) from an iterator,
and each batch is written before the next is read, so memory stays bounded by one batch however
large the table: the CSV and JSONL writers append lines, the Parquet writer appends a row group.
Every file is written with the column order and types declared in the codebook, so the three
formats hold the same data and an empty table still has its header or schema. pyreadstat
cannot append to a .sav/.dta file, so those writers stream the batches into a temporary Parquet
file and convert the whole table when it is closed: one table is in memory at that point.

Every writer applies the export's DisclosurePlan to every row it writes (open_writer wraps it),
so a quasi-identifier suppressed for k-anonymity is suppressed in every file, whichever table
the rows come from. read_rows reads a written file back for the post-build disclosure check.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from . import statfiles
from .codebook import Column
from .disclosure import DisclosurePlan

FORMATS = ("csv", "parquet", "jsonl", *statfiles.STAT_FORMATS)
FORMAT_LABELS = {
    "csv": "CSV",
    "parquet": "Parquet (zstd)",
    "jsonl": "JSON Lines",
    "sav": "SPSS .sav with variable and value labels",
    "dta": "Stata .dta with variable and value labels",
    "r": "CSV with load.R (R labels and factor levels)",
}
# "r" is CSV plus the load.R script the builder writes beside the tables.
EXTENSIONS = {
    "csv": ".csv",
    "parquet": ".parquet",
    "jsonl": ".jsonl",
    "sav": ".sav",
    "dta": ".dta",
    "r": ".csv",
}

_ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}


class TableWriter(Protocol):
    def write_batch(self, rows: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def _plain(value: Any) -> Any:
    # Lists and dicts (flags, scores) travel as JSON text so every format has the same columns.
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class CsvWriter:
    def __init__(self, path: Path, columns: Sequence[Column]) -> None:
        self._names = [c.name for c in columns]
        self._file = path.open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(self._names)

    def write_batch(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self._csv.writerow([self._cell(row.get(name)) for name in self._names])

    @staticmethod
    def _cell(value: Any) -> Any:
        value = _plain(value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return value

    def close(self) -> None:
        self._file.close()


class JsonlWriter:
    def __init__(self, path: Path, columns: Sequence[Column]) -> None:
        self._names = [c.name for c in columns]
        self._file = path.open("w", encoding="utf-8")

    def write_batch(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            record = {name: _plain(row.get(name)) for name in self._names}
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()


class ParquetWriter:
    def __init__(self, path: Path, columns: Sequence[Column]) -> None:
        self._names = [c.name for c in columns]
        self._schema = pa.schema([pa.field(c.name, _ARROW_TYPES[c.type]) for c in columns])
        self._writer = pq.ParquetWriter(str(path), self._schema, compression="zstd")

    def write_batch(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        data = {name: [_plain(row.get(name)) for row in rows] for name in self._names}
        self._writer.write_table(pa.Table.from_pydict(data, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


class StatWriter:
    """SPSS or Stata file of one table; `notes` (after close) says what the data required beyond
    the codebook's layout (statfiles.WriteNotes), for the codebook."""

    def __init__(self, fmt: str, path: Path, columns: Sequence[Column], file_label: str = ""):
        self._fmt = fmt
        self._path = path
        self._columns = list(columns)
        self._file_label = file_label
        # Outside the build directory: only documented tables may ever sit there.
        self._buffer_dir = Path(tempfile.mkdtemp(prefix="export-stat-"))
        self._buffer = ParquetWriter(self._buffer_dir / "buffer.parquet", columns)
        self.notes: statfiles.WriteNotes | None = None

    def write_batch(self, rows: Sequence[dict[str, Any]]) -> None:
        self._buffer.write_batch(rows)

    def close(self) -> None:
        try:
            self._buffer.close()
            table = pq.read_table(str(self._buffer_dir / "buffer.parquet"))
            data = {c.name: table.column(c.name).to_pylist() for c in self._columns}
            del table
            self.notes = statfiles.write_frame(
                self._fmt, self._path, self._columns, data, file_label=self._file_label
            )
        finally:
            shutil.rmtree(self._buffer_dir, ignore_errors=True)


class SuppressingWriter:
    """Applies the export's disclosure plan to each row before the format writer sees it."""

    def __init__(self, inner: TableWriter, columns: Sequence[Column], plan: DisclosurePlan):
        self._inner = inner
        # Only the columns that carry some quasi-identifier can change.
        self._columns = [c for c in columns if c.carries]
        self._plan = plan

    def write_batch(self, rows: Sequence[dict[str, Any]]) -> None:
        self._inner.write_batch([self._plan.apply(row, self._columns) for row in rows])

    def close(self) -> None:
        self._inner.close()

    @property
    def notes(self) -> statfiles.WriteNotes | None:
        return getattr(self._inner, "notes", None)


def open_writer(
    fmt: str,
    path: Path,
    columns: Sequence[Column],
    *,
    disclosure: DisclosurePlan | None,
    file_label: str = "",
) -> TableWriter:
    """A writer for one file. `disclosure` is required by keyword so that no export table can be
    written without deciding about it; None only for data that holds no participant rows.
    `file_label` is the dataset label SPSS and Stata show (ignored by the other formats)."""
    if fmt in ("csv", "r"):
        writer: TableWriter = CsvWriter(path, columns)
    elif fmt == "jsonl":
        writer = JsonlWriter(path, columns)
    elif fmt == "parquet":
        writer = ParquetWriter(path, columns)
    elif fmt in ("sav", "dta"):
        writer = StatWriter(fmt, path, columns, file_label)
    else:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if disclosure is not None and disclosure.suppressed:
        writer = SuppressingWriter(writer, columns, disclosure)
    return writer


def read_rows(fmt: str, path: Path, columns: Sequence[Column]) -> Iterator[dict[str, Any]]:
    """The rows of a written file, batch by batch, as plain values (CSV cells stay text, an
    empty CSV cell is None); a CSV header that differs from `columns` shows as extra keys.
    SPSS and Stata files are decoded back to the codebook's names and values."""
    if fmt in ("csv", "r"):
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            for cells in reader:
                yield {
                    name: (cell if cell != "" else None)
                    for name, cell in zip(header, cells, strict=True)
                }
    elif fmt == "jsonl":
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)
    elif fmt == "parquet":
        parquet = pq.ParquetFile(str(path))
        for batch in parquet.iter_batches(batch_size=2000):
            yield from batch.to_pylist()
    elif fmt in ("sav", "dta"):
        yield from statfiles.read_frame_rows(fmt, path, columns)
    else:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def write_table(
    fmt: str,
    path: Path,
    columns: Sequence[Column],
    batches: Iterable[Sequence[dict[str, Any]]],
    *,
    disclosure: DisclosurePlan | None,
    file_label: str = "",
    notes: dict[str, Any] | None = None,
) -> int:
    """Write every batch to `path`; returns the number of rows written. With `notes`, what a
    statistical-package writer had to note (statfiles.WriteNotes) is stored under the path's
    stem."""
    writer = open_writer(fmt, path, columns, disclosure=disclosure, file_label=file_label)
    count = 0
    try:
        for batch in batches:
            writer.write_batch(batch)
            count += len(batch)
    finally:
        writer.close()
    if notes is not None and getattr(writer, "notes", None) is not None:
        notes[path.stem] = writer.notes
    return count
