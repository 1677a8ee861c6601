"""Table writers for dataset exports: CSV, Parquet (pyarrow) and JSON Lines.

Pure Python plus pyarrow (no Django). Rows arrive in batches (lists of dicts) from an iterator,
and each batch is written before the next is read, so memory stays bounded by one batch however
large the table: the CSV and JSONL writers append lines, the Parquet writer appends a row group.
Every file is written with the column order and types declared in the codebook, so the three
formats hold the same data and an empty table still has its header or schema.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from .codebook import Column

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


def open_writer(fmt: str, path: Path, columns: Sequence[Column]) -> TableWriter:
    if fmt == "csv":
        return CsvWriter(path, columns)
    if fmt == "jsonl":
        return JsonlWriter(path, columns)
    if fmt == "parquet":
        return ParquetWriter(path, columns)
    raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def write_table(
    fmt: str, path: Path, columns: Sequence[Column], batches: Iterable[Sequence[dict[str, Any]]]
) -> int:
    """Write every batch to `path`; returns the number of rows written."""
    writer = open_writer(fmt, path, columns)
    count = 0
    try:
        for batch in batches:
            writer.write_batch(batch)
            count += len(batch)
    finally:
        writer.close()
    return count
