"""The evaluate() helper and the JSON-lines command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from studyplatform.safety.detector import evaluate
from studyplatform.safety.detector.__main__ import main

ROOT = Path(__file__).resolve().parents[3]


def test_evaluate_counts_hits_misses_and_false_alarms():
    # given: two true positives (one with the wrong severity), a miss, a false alarm, a negative
    table = [
        {"text": "I want to kill myself", "language": "en", "expected": "high"},
        {"text": "quero morrer", "language": "pt-br", "expected": "high"},  # found as medium
        {"text": "everything feels grey lately", "language": "en", "expected": "medium"},
        ("I want to die of boredom in this lecture, kill myself", "en", None),
        ("I love my dog", None),
    ]
    # when
    result = evaluate(table)
    # then
    assert result["n"] == 5
    assert (result["true_positives"], result["false_negatives"]) == (2, 1)
    assert (result["false_positives"], result["true_negatives"]) == (1, 1)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["severity_agreement"] == pytest.approx(0.5)
    assert result["false_negative_texts"] == ["everything feels grey lately"]
    assert result["false_positive_texts"] == [
        "I want to die of boredom in this lecture, kill myself"
    ]


def test_evaluate_on_an_empty_table_has_no_ratios():
    result = evaluate([])
    assert result["n"] == 0
    assert result["precision"] is None
    assert result["recall"] is None


def test_cli_writes_one_result_per_input_line_and_a_summary_when_labelled():
    # given: two labelled lines, one unlabelled, one blank
    lines = [
        {"text": "Não quero mais viver", "language": "pt-br", "expected": "medium"},
        {"text": "this homework is killing me", "expected": None},
        {"text": "hello", "language": "en"},
    ]
    stdin = io.StringIO("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    # when
    status = main([], stdin, stdout, stderr)
    # then
    assert status == 0
    out = [json.loads(x) for x in stdout.getvalue().splitlines()]
    assert out[0] == {
        "text": "Não quero mais viver",
        "severity": "medium",
        "category": "passive_ideation",
        "start": 0,
        "end": 20,
    }
    assert out[1]["severity"] is None and out[1]["start"] is None
    assert out[2]["severity"] is None
    summary = json.loads(stderr.getvalue())["evaluation"]
    assert summary["n"] == 2
    assert summary["precision"] == 1.0
    assert summary["recall"] == 1.0


def test_cli_reports_a_bad_line_and_still_screens_the_rest():
    stdin = io.StringIO('not json\n{"text": "kms"}\n{"text": "x", "language": "fr"}\n')
    stdout, stderr = io.StringIO(), io.StringIO()
    status = main([], stdin, stdout, stderr)
    assert status == 1
    out = [json.loads(x) for x in stdout.getvalue().splitlines()]
    assert [o["severity"] for o in out] == ["high"]
    errors = [json.loads(x) for x in stderr.getvalue().splitlines()]
    assert [e["line"] for e in errors] == [1, 3]


def test_cli_runs_as_a_module():
    # given: the real interpreter running `python -m studyplatform.safety.detector`
    proc = subprocess.run(
        [sys.executable, "-m", "studyplatform.safety.detector"],
        input='{"text": "I want to kill myself", "language": "en"}\n',
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    # then
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "text": "I want to kill myself",
        "severity": "high",
        "category": "suicidal_intent",
        "start": 0,
        "end": 21,
    }
