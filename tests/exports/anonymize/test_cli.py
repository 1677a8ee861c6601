"""The command-line interface: JSON lines in, JSON lines out; malformed input stops the run."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run_cli(stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studyplatform.exports.anonymize"],
        input=stdin.encode("utf-8"),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_it_round_trips_json_lines_with_spans_into_the_input_text():
    # given: two lines from one participant and one anonymous line
    known = {"names": ["José Araújo"], "emails": ["jose.araujo@example.com.br"], "ids": ["P-10482"]}
    lines = [
        {"id": 1, "text": "Oi, aqui é o jose araujo, zap (11) 98765-4321", "known": known},
        {
            "id": "b",
            "text": "José de novo: (11) 98765-4321 ou jose.araujo@example.com.br",
            "known": known,
        },
        {"id": None, "text": "email me at priya@example.org"},
    ]
    # when: they are piped through the CLI
    completed = run_cli("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    # then: one output line per input line, with offsets into the input text
    assert completed.returncode == 0, completed.stderr.decode()
    outputs = [json.loads(line) for line in completed.stdout.decode("utf-8").splitlines()]
    assert [o["id"] for o in outputs] == [1, "b", None]
    assert outputs[0]["text"] == "Oi, aqui é o [PERSON_1], zap [PHONE_1]"
    # surrogates are shared by lines with the same `known` set
    assert outputs[1]["text"] == "[PERSON_1] de novo: [PHONE_1] ou [EMAIL_1]"
    assert outputs[2]["text"] == "email me at [EMAIL_1]"
    for line, output in zip(lines, outputs, strict=True):
        values = [line["text"][s["start"] : s["end"]] for s in output["spans"]]
        assert all(set(s) == {"start", "end", "type"} for s in output["spans"])
        assert values and all(values)
    assert [s["type"] for s in outputs[1]["spans"]] == ["PERSON", "PHONE", "EMAIL"]


def test_it_stops_at_a_malformed_line_and_names_it_on_stderr():
    stdin = (
        '{"id": 1, "text": "call 415-555-0132"}\n{"id": 2, "text": 5}\n{"id": 3, "text": "ok"}\n'
    )
    completed = run_cli(stdin)
    assert completed.returncode == 1
    assert completed.stderr.decode().strip() == 'line 2: "text" must be a string'
    # the first line was written, nothing after the bad one
    assert [json.loads(line)["id"] for line in completed.stdout.decode().splitlines()] == [1]


def test_it_rejects_invalid_json_and_misspelt_fields():
    assert run_cli("not json\n").stderr.decode().startswith("line 1: not valid JSON (")
    completed = run_cli('{"id": 1, "text": "x", "knwon": {}}\n')
    assert completed.returncode == 1
    assert (
        completed.stderr.decode().strip()
        == "line 1: unknown field 'knwon' (expected id, text, known)"
    )
    completed = run_cli('{"id": 1, "text": "x", "known": {"names": "Ana"}}\n')
    assert completed.stderr.decode().strip() == 'line 1: "known.names" must be a list of strings'
    assert completed.stdout == b""


def test_it_skips_blank_lines():
    completed = run_cli('\n{"id": 1, "text": "hi"}\n\n')
    assert completed.returncode == 0
    assert [json.loads(line) for line in completed.stdout.decode().splitlines()] == [
        {"id": 1, "text": "hi", "spans": []}
    ]
