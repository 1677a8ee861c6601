"""Table writers for dataset exports: CSV, Parquet (pyarrow) and JSON Lines.

Pure Python plus pyarrow (no Django). Rows arrive in batches (lists of dicts) from an iterator,
and each batch is written before the next is read, so memory stays bounded by one batch however
large the table: the CSV and JSONL writers append lines, the Parquet writer appends a row group.
Every file is written with the column order and types declared in the codebook, so the three
formats hold the same data and an empty table still has its header or schema.

Every writer applies the export's DisclosurePlan to every row it writes (open_writer wraps it),
so a quasi-identifier suppressed for k-anonymity is suppressed in every file, whichever table
the rows come from. read_rows reads a written file back for the post-build disclosure check.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from .codebook import Column
from .disclosure import DisclosurePlan

FORMATS = ("csv", "parquet", "jsonl")
EXTENSIONS = {"csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl"}

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


def open_writer(
    fmt: str, path: Path, columns: Sequence[Column], *, disclosure: DisclosurePlan | None
) -> TableWriter:
    """A writer for one file. `disclosure` is required by keyword so that no export table can be
    written without deciding about it; None only for data that holds no participant rows."""
    if fmt == "csv":
        writer: TableWriter = CsvWriter(path, columns)
    elif fmt == "jsonl":
        writer = JsonlWriter(path, columns)
    elif fmt == "parquet":
        writer = ParquetWriter(path, columns)
    else:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if disclosure is not None and disclosure.suppressed:
        writer = SuppressingWriter(writer, columns, disclosure)
    return writer


def read_rows(fmt: str, path: Path, columns: Sequence[Column]) -> Iterator[dict[str, Any]]:
    """The rows of a written file, batch by batch, as plain values (CSV cells stay text, an
    empty CSV cell is None); a CSV header that differs from `columns` shows as extra keys."""
    if fmt == "csv":
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
    else:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def write_table(
    fmt: str,
    path: Path,
    columns: Sequence[Column],
    batches: Iterable[Sequence[dict[str, Any]]],
    *,
    disclosure: DisclosurePlan | None,
) -> int:
    """Write every batch to `path`; returns the number of rows written."""
    writer = open_writer(fmt, path, columns, disclosure=disclosure)
    count = 0
    try:
        for batch in batches:
            writer.write_batch(batch)
            count += len(batch)
    finally:
        writer.close()
    return count
