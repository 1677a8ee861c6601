"""Formatting of agreement figures (classifiers/agreement.py) on the coding pages: a value with
its bootstrap interval, or a dash when it is undefined."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def figure(value: dict[str, Any] | None) -> str:
    if not value or value.get("value") is None:
        return "—"
    text = f"{value['value']:.2f}"
    if value.get("ci_low") is not None:
        text += f" [{value['ci_low']:.2f}, {value['ci_high']:.2f}]"
    return text


@register.filter
def figure_pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"
