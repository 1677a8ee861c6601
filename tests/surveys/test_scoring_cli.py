"""The stable command-line interface: python -m surveys.scoring KEY 'JSON_LIST'."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "surveys.scoring", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_it_prints_scores_bands_and_flags_as_json():
    # when: a PHQ-9 with a positive item 9
    proc = run("phq9", "[0,1,2,3,0,1,2,3,1]")
    # then
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "instrument": "phq9",
        "scores": {"total": 13},
        "bands": {"total": "moderate"},
        "flags": ["safety:self_harm"],
    }


def test_it_prints_both_who5_scores():
    proc = run("who5", "[3,3,3,2,1]")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "instrument": "who5",
        "scores": {"raw": 12, "percentage": 48},
        "bands": {"percentage": "poor_wellbeing"},
        "flags": [],
    }


def test_a_missing_item_prints_null_scores_and_exits_0():
    proc = run("lsns6", "[1,2,3,null,2,2]")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scores"] == {"total": None, "family": 6, "friends": None}


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (
            ("phq9", "[0,0,0,0,0,0,0,0,4]"),
            "error: phq9: phq9_9: 4 is not one of the allowed values [0, 1, 2, 3]\n",
        ),
        (("ema_mood", '["high"]'), "error: ema_mood: mood: expected a number, got text 'high'\n"),
        (("gad7", "[0,0,0]"), "error: gad7: answers: expected 7 answers in item order, got 3\n"),
        (
            ("gad7", '{"gad7_1": 0}'),
            "error: ANSWERS must be a JSON list with one answer per item, in item order "
            "(null for a missing item)\n",
        ),
    ],
)
def test_bad_answers_exit_1_naming_the_problem(args, stderr):
    proc = run(*args)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == stderr


def test_malformed_json_exits_1():
    proc = run("phq9", "[0,0,")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ANSWERS is not valid JSON: ")


def test_an_unknown_instrument_exits_1():
    proc = run("phq8", "[0]")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: unknown instrument 'phq8' (known: ")


def test_a_wrong_number_of_arguments_prints_usage_and_exits_1():
    proc = run("phq9")
    assert proc.returncode == 1
    assert proc.stderr.startswith("usage: python -m surveys.scoring")
