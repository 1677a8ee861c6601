"""Screener answers: parsing and server-side eligibility rules. Pure Python (no Django)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class AnswerError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def parse_answers(questions: list[dict], raw: dict[str, Any]) -> dict[str, Any]:
    """Turn submitted form values into typed answers; raise AnswerError naming each bad field.

    `raw` maps question key to a string (or a list of strings for multiple choice).
    """
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for q in questions:
        key, kind = q["key"], q["type"]
        value = raw.get(key)
        if value in (None, "", []):
            if q.get("required", True):
                errors[key] = "required"
            continue
        if kind == "number":
            try:
                number = float(value)
            except (TypeError, ValueError):
                errors[key] = "not_a_number"
                continue
            if ("min" in q and number < q["min"]) or ("max" in q and number > q["max"]):
                errors[key] = "out_of_range"
                continue
            answers[key] = int(number) if number.is_integer() else number
        elif kind == "yes_no":
            if value not in ("yes", "no", True, False):
                errors[key] = "invalid_choice"
                continue
            answers[key] = value in ("yes", True)
        elif kind == "single_choice":
            allowed = {str(o["value"]): o["value"] for o in q.get("options", [])}
            if str(value) not in allowed:
                errors[key] = "invalid_choice"
                continue
            answers[key] = allowed[str(value)]
        elif kind == "multiple_choice":
            allowed = {str(o["value"]): o["value"] for o in q.get("options", [])}
            values = value if isinstance(value, list) else [value]
            if any(str(v) not in allowed for v in values):
                errors[key] = "invalid_choice"
                continue
            answers[key] = [allowed[str(v)] for v in values]
        else:
            answers[key] = str(value)[:500]
    if errors:
        raise AnswerError(errors)
    return answers


_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "contains": lambda a, b: b in a,
}


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    failed_rules: list[str]


def evaluate(rules: list[dict], answers: dict[str, Any]) -> Eligibility:
    """Every rule must hold. A missing answer fails the rules that need it."""
    failed = []
    for rule in rules:
        value = answers.get(rule["question"])
        try:
            ok = value is not None and _OPS[rule["op"]](value, rule["value"])
        except TypeError:  # comparing a number with text, etc.
            ok = False
        if not ok:
            failed.append(rule["key"])
    return Eligibility(eligible=not failed, failed_rules=failed)
