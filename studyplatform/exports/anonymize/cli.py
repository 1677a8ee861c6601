"""Command-line interface: JSON lines in, JSON lines out.

    python -m studyplatform.exports.anonymize < messages.jsonl > anonymized.jsonl

Input, one object per line:
    {"id": ..., "text": "...", "known": {"names": [...], "emails": [...], "ids": [...]}}
`known` and each of its lists are optional. Output, one line per input line, in order:
    {"id": ..., "text": "<anonymized>", "spans": [{"start": i, "end": j, "type": "EMAIL"}, ...]}
with spans as code-point offsets into the *input* text.

Surrogates are consistent across lines that carry the same non-empty `known` set (the same
participant); lines without `known` are numbered independently, each starting at 1.

A malformed line stops the run: exit status 1, a message naming the line number and the
problem on stderr, and nothing more written to stdout (lines before it were already written).
Unknown fields are an error too, because a misspelt "known" would silently skip the
participant's own identifiers. Blank lines are skipped.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from .anonymizer import Anonymizer
from .known import KnownIdentifiers

_FIELDS = frozenset({"id", "text", "known"})
_KNOWN_FIELDS = ("names", "emails", "ids")


class InputError(ValueError):
    """A line of input that cannot be processed; the message is shown to the user."""


def parse_line(raw: str) -> tuple[Any, str, KnownIdentifiers]:
    """Validate one input line and return (id, text, known)."""
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise InputError("expected a JSON object")
    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r} (expected id, text, known)")
    if "id" not in record:
        raise InputError('missing "id"')
    if "text" not in record:
        raise InputError('missing "text"')
    text = record["text"]
    if not isinstance(text, str):
        raise InputError('"text" must be a string')
    known_record = record.get("known")
    if known_record is None:
        return record["id"], text, KnownIdentifiers()
    if not isinstance(known_record, dict):
        raise InputError('"known" must be an object with "names", "emails" and "ids" lists')
    unknown = sorted(set(known_record) - set(_KNOWN_FIELDS))
    if unknown:
        raise InputError(f'unknown field "known.{unknown[0]}" (expected names, emails, ids)')
    lists: dict[str, tuple[str, ...]] = {}
    for name in _KNOWN_FIELDS:
        values = known_record.get(name, [])
        if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
            raise InputError(f'"known.{name}" must be a list of strings')
        lists[name] = tuple(values)
    return record["id"], text, KnownIdentifiers(**lists)


def run(lines: IO[bytes], out: IO[str], err: IO[str]) -> int:
    """Process `lines`; return the exit status."""
    anonymizers: dict[KnownIdentifiers, Anonymizer] = {}
    for number, raw_bytes in enumerate(lines, start=1):
        try:
            raw = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            err.write(f"line {number}: not valid UTF-8\n")
            return 1
        if not raw.strip():
            continue
        try:
            record_id, text, known = parse_line(raw)
        except InputError as error:
            err.write(f"line {number}: {error}\n")
            return 1
        if known:
            anonymizer = anonymizers.get(known)
            if anonymizer is None:
                anonymizer = anonymizers[known] = Anonymizer(known)
        else:
            anonymizer = Anonymizer()
        result = anonymizer.anonymize(text)
        output = {
            "id": record_id,
            "text": result.text,
            "spans": [{"start": s.start, "end": s.end, "type": s.type} for s in result.spans],
        }
        out.write(json.dumps(output, ensure_ascii=False) + "\n")
    out.flush()
    return 0


def main() -> int:
    """Entry point for `python -m studyplatform.exports.anonymize`."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    return run(sys.stdin.buffer, sys.stdout, sys.stderr)
