"""Command line: screen JSON-lines messages from stdin, one JSON result per line on stdout.

    python -m studyplatform.safety.detector < messages.jsonl

Input lines: ``{"text": "...", "language": "en" | "pt-br" | null}`` (language optional).
Output lines: ``{"text", "severity", "category", "start", "end"}``; severity and the other
fields are null when nothing matched. When input lines also carry ``"expected"`` (a severity
or null), the :func:`evaluate` summary (precision, recall...) is printed to stderr at the end.
A malformed line is reported on stderr and makes the exit status 1; the other lines still run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import IO

from .detector import Detector, evaluate


def main(
    argv: Sequence[str] | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run the CLI; returns the exit status."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    detector = Detector()
    labelled: list[dict] = []
    status = 0
    for number, line in enumerate(stdin, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError('expected an object with a string "text"')
            found = detector.detect(item["text"], item.get("language"))
        except ValueError as exc:  # json.JSONDecodeError and unknown languages included
            print(json.dumps({"line": number, "error": str(exc)}), file=stderr)
            status = 1
            continue
        stdout.write(
            json.dumps(
                {
                    "text": item["text"],
                    "severity": found.severity if found else None,
                    "category": found.category if found else None,
                    "start": found.start if found else None,
                    "end": found.end if found else None,
                },
                ensure_ascii=False,
            )
            + "\n"
        )
        if "expected" in item:
            labelled.append(item)
    if labelled:
        summary = evaluate(labelled, detector)
        print(json.dumps({"evaluation": summary}, ensure_ascii=False), file=stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
