"""Protocol numbers made safe for arithmetic, for code that runs on stored protocols.

The schema bounds every number a protocol may hold, but versions stored before those bounds
existed may hold anything the old schema allowed (`response_time_hours: 1e308` made every crisis
message fail: `timedelta(hours=1e308)` overflows). Code that computes with protocol numbers reads
them through these helpers, which clamp into the schema's own range, so a stored protocol can
never turn into an exception on the participant's path. Pure Python.
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from typing import Any

from .validate import schema

DEFAULT_RESPONSE_TIME_HOURS = 24.0


def clamp_number(value: Any, *, default: float, minimum: float, maximum: float) -> float:
    """`value` clamped into [minimum, maximum]; `default` when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, float) and not math.isfinite(value):
        return default if math.isnan(value) else (maximum if value > 0 else minimum)
    return min(max(value, minimum), maximum)


def _bounds(node: dict) -> tuple[float, float]:
    low = node.get("minimum", node.get("exclusiveMinimum", -math.inf))
    return low, node.get("maximum", math.inf)


def response_time_hours(protocol: dict) -> float:
    """The safety response time in hours, within the schema's range (default 24)."""
    node = schema()["properties"]["safety"]["properties"]["response_time_hours"]
    low, high = _bounds(node)
    value = (protocol.get("safety") or {}).get("response_time_hours", DEFAULT_RESPONSE_TIME_HOURS)
    hours = clamp_number(value, default=DEFAULT_RESPONSE_TIME_HOURS, minimum=low, maximum=high)
    # exclusiveMinimum 0: a zero response time would make every alert overdue at once
    return hours if hours > low else DEFAULT_RESPONSE_TIME_HOURS


@lru_cache(maxsize=1)
def _schedule_bounds() -> dict[str, Any]:
    """{field: (low, high)} for a schedule entry, its reminders, and each rule type's fields."""
    defs = schema()["$defs"]
    entry = defs["schedule_entry"]["properties"]
    out: dict[str, Any] = {
        "window_hours": _bounds(entry["window_hours"]),
        "reminders.max": _bounds(entry["reminders"]["properties"]["max"]),
        "reminders.offsets_hours": _bounds(
            entry["reminders"]["properties"]["offsets_hours"]["items"]
        ),
        "rule": {},
    }
    for branch in defs["rule"]["allOf"]:
        kind = branch["if"]["properties"]["type"]["const"]
        fields = {
            name: _bounds(node)
            for name, node in branch["then"]["properties"].items()
            if isinstance(node, dict) and node.get("type") in ("integer", "number")
        }
        out["rule"][kind] = fields
    return out


def _clamped(value: Any, bounds: tuple[float, float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    low, high = bounds
    fallback = low if math.isfinite(low) else 0
    result = clamp_number(value, default=fallback, minimum=low, maximum=high)
    return int(result) if isinstance(value, int) else result


def bounded_schedule_entry(entry: dict) -> dict:
    """A copy of a schedule entry with every number clamped into the schema's range."""
    bounds = _schedule_bounds()
    out = copy.deepcopy(entry)
    if "window_hours" in out:
        out["window_hours"] = _clamped(out["window_hours"], bounds["window_hours"])
    reminders = out.get("reminders")
    if isinstance(reminders, dict):
        if "max" in reminders:
            reminders["max"] = _clamped(reminders["max"], bounds["reminders.max"])
        if isinstance(reminders.get("offsets_hours"), list):
            reminders["offsets_hours"] = [
                _clamped(h, bounds["reminders.offsets_hours"]) for h in reminders["offsets_hours"]
            ]
    rule = out.get("rule")
    if isinstance(rule, dict):
        for name, field_bounds in bounds["rule"].get(rule.get("type"), {}).items():
            if name in rule:
                rule[name] = _clamped(rule[name], field_bounds)
    return out


def session_gap_minutes(protocol: dict, default: int = 30) -> int:
    node = schema()["properties"]["analysis"]["properties"]["session_gap_minutes"]
    low, high = _bounds(node)
    value = (protocol.get("analysis") or {}).get("session_gap_minutes", default)
    return int(clamp_number(value, default=default, minimum=low, maximum=high))
