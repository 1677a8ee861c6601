"""Ceilings for untrusted structured input (JSON bodies, parsed protocols). Pure Python.

Python's json module accepts things the rest of the platform cannot hold: lone surrogates
("\\ud800" cannot be encoded as UTF-8, so storing or encrypting it fails), NUL characters
(PostgreSQL text and jsonb refuse them), numbers too large for a float (`1e400` parses as
infinity) and nesting deep enough to exhaust the interpreter's stack in code that recurses over
it (schema validation, YAML export). `check_value` walks a value iteratively, so checking a
deeply nested value can never itself raise RecursionError, and reports the first problem with
the path of the offending field, in the notation error messages use (`arms[1].model.name`).
"""

from __future__ import annotations

import json
import math
from typing import Any

# A JSON request body nested deeper than this is refused outright. Real payloads are a few
# levels deep; a protocol sent as JSON is the deepest (about 8, under {"protocol": ...}).
MAX_JSON_DEPTH = 32
# No request body needs more list items than this; protocols have a tighter bound of their own.
MAX_JSON_ITEMS = 10_000
# Integers beyond 64 bits fit no database column and no model parameter.
MAX_ABS_INT = 2**63 - 1


class InputRejected(ValueError):
    """`path` names the field ("" for the whole body); `message` says what is wrong. `parts`
    is the same place as keys and list indexes where `check_value` found it (else empty), for
    callers that act on the place rather than show it."""

    def __init__(self, path: str, message: str, parts: tuple[str | int, ...] = ()):
        super().__init__(path, message)
        self.path = path
        self.parts = parts
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _join(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def string_problem(text: str) -> str | None:
    """Why `text` cannot be stored as it is, or None when it can."""
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains invalid Unicode (an unpaired surrogate)"
    return None


def check_value(
    value: Any,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_items: int = MAX_JSON_ITEMS,
    max_abs_int: int | None = MAX_ABS_INT,
    root: str = "",
) -> None:
    """Raise InputRejected for the first unstorable string, non-finite or out-of-range number,
    list or mapping longer than `max_items`, or nesting deeper than `max_depth` (the root value
    is depth 0). `max_abs_int=None` leaves integer ranges to a schema with better words.

    Bounding lengths here, before any schema runs, matters: some schema keywords (uniqueItems)
    cost quadratic time in a list's length.
    """
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(value, (root,) if root else (), 0)]
    while stack:
        item, parts, depth = stack.pop()
        problem = None
        if isinstance(item, dict | list):
            if depth >= max_depth:
                problem = f"is nested too deeply (at most {max_depth} levels)"
            elif len(item) > max_items:
                problem = f"has too many entries (at most {max_items})"
            elif isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and (key_problem := string_problem(key)):
                        problem = f"field name {key_problem}"
                        break
                    stack.append((child, (*parts, str(key)), depth + 1))
            else:
                stack.extend((child, (*parts, i), depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            problem = string_problem(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                problem = "must be a finite number"
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int) and max_abs_int is not None and abs(item) > max_abs_int:
            problem = "is out of range"
        if problem:
            path = ""
            for part in parts:
                path = _join(path, part)
            raise InputRejected(path, problem, parts)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(
    raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, max_items: int = MAX_JSON_ITEMS
) -> Any:
    """Parse JSON text and check it with `check_value`. Raises InputRejected.

    NaN and Infinity literals are refused (they are not JSON); the decoder's own recursion
    guard turns pathological nesting into RecursionError, reported here as too deep.
    """
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise InputRejected("", f"is nested too deeply (at most {max_depth} levels)") from None
    except UnicodeDecodeError:
        raise InputRejected("", "is not valid UTF-8") from None
    except ValueError as exc:
        raise InputRejected("", f"is not valid JSON ({exc})") from None
    check_value(data, max_depth=max_depth, max_items=max_items)
    return data


def optional_str(data: dict, name: str, *, max_length: int, default: str = "") -> str:
    """`data[name]` as text of at most `max_length` characters (`default` when absent/null)."""
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InputRejected(name, "must be text")
    if problem := string_problem(value):
        raise InputRejected(name, problem)
    if len(value) > max_length:
        raise InputRejected(name, f"must be at most {max_length} characters")
    return value


def optional_int(data: dict, name: str, *, minimum: int, maximum: int) -> int | None:
    """`data[name]` as a whole number in [minimum, maximum] (None when absent/null)."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # JavaScript has one number type; 60.0 is 60
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputRejected(name, "must be a whole number")
    if not minimum <= value <= maximum:
        raise InputRejected(name, f"must be between {minimum} and {maximum}")
    return value
