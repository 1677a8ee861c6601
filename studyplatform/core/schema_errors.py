"""JSON-schema errors in words a researcher understands, with one wording for the whole platform.

Protocols (studies/protocol) and survey instruments (surveys/instruments.py, which protocols can
embed as custom instruments) are both checked against a JSON schema; a researcher sees the
errors of both on the same console page, so both translate jsonschema's messages here. Each
caller keeps its own path format and its own schema-specific hints (what a pattern means).
Pure Python (no Django).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jsonschema import ValidationError

_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping of fields",
}


def schema_error_messages(
    error: ValidationError,
    path: list[Any] | None = None,
    *,
    pattern_hints: Mapping[str, str] | None = None,
) -> list[tuple[list[Any], str]]:
    """(path parts, message) for one leaf error; ``path`` defaults to the error's own path.

    A missing field and an unknown field are reported at the field's own path, so the console
    can put the message next to it. ``pattern_hints`` maps a schema pattern to what it means.
    A schema may name what to write instead of a retired field (``"x-retired": {field: why}``).
    """
    path = list(error.absolute_path) if path is None else list(path)
    kind = error.validator
    value = error.validator_value
    if kind == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        return [([*path, missing.group(1) if missing else "?"], "this field is required")]
    if kind == "additionalProperties":
        extras = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        retired = error.schema.get("x-retired", {})
        return [([*path, extra], retired.get(extra, "unknown field")) for extra in extras]
    message = _message(kind, value, error, pattern_hints or {})
    if "propertyNames" in error.schema_path:
        # The error is about a key of the mapping at `path`, not about a value.
        message = f"key {error.instance!r}: {message}"
    return [(path, message)]


def _message(kind: str, value: Any, error: ValidationError, hints: Mapping[str, str]) -> str:
    if kind == "type":
        expected = value if isinstance(value, list) else [value]
        return "must be " + " or ".join(_TYPE_WORDS.get(t, t) for t in expected)
    if kind == "enum":
        return "must be one of: " + ", ".join(map(str, value))
    if kind == "const":
        return f"must be {value!r}"
    if kind == "pattern":
        return hints.get(value, "has an invalid format")
    if kind in ("minimum", "exclusiveMinimum"):
        return f"must be {'at least' if kind == 'minimum' else 'greater than'} {value}"
    if kind in ("maximum", "exclusiveMaximum"):
        return f"must be {'at most' if kind == 'maximum' else 'less than'} {value}"
    if kind == "minItems":
        return f"must have at least {value} item{'s' if value != 1 else ''}"
    if kind == "maxItems":
        return f"must have at most {value} items"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxLength":
        return f"must be at most {value} characters"
    if kind == "maxProperties":
        return f"must have at most {value} entries"
    if kind == "uniqueItems":
        return "must not repeat items"
    return error.message
