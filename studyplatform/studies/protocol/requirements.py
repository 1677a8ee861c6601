"""Meaning checks of the protocol's ``requirements`` section (usage minimums, nudge, completion).

The schema checks each field's type and range; this checks what only makes sense together:
one period (daily or weekly), a completion rule in the same unit that fits in the study, and a
nudge text in every language of the study. Errors carry the path; the caller adds the line.
"""

from __future__ import annotations

from typing import Any

from .validate import ProtocolError, _languages, _text_languages_errors

ROOT = ("requirements",)


def requirements_errors(doc: dict[str, Any]) -> list[ProtocolError]:
    section = doc.get("requirements")
    if not isinstance(section, dict):
        return []
    errors: list[ProtocolError] = []
    has_daily, has_weekly = "daily" in section, "weekly" in section
    if has_daily and has_weekly:
        errors.append(
            ProtocolError(
                (*ROOT, "weekly"),
                "give either a daily or a weekly minimum, not both",
            )
        )
        return errors
    if not (has_daily or has_weekly):
        errors.append(
            ProtocolError(
                ROOT,
                "needs a minimum: daily (e.g. daily: {active_minutes: 5}) or weekly",
            )
        )
        return errors
    unit, other = ("weeks", "days") if has_weekly else ("days", "weeks")
    period_days = 7 if has_weekly else 1
    duration = int(doc.get("study", {}).get("duration_days", 0))
    completion = section.get("completion")
    if isinstance(completion, dict):
        where = (*ROOT, "completion")
        for key in (f"min_{other}", f"of_{other}"):
            if key in completion:
                errors.append(
                    ProtocolError(
                        (*where, key),
                        f"the minimum is {'weekly' if has_weekly else 'daily'}: count the "
                        f"completion rule in {unit} (min_{unit}, of_{unit})",
                    )
                )
        for key in (f"min_{unit}", f"of_{unit}"):
            if key not in completion:
                errors.append(ProtocolError((*where, key), "this field is required"))
        low, high = completion.get(f"min_{unit}"), completion.get(f"of_{unit}")
        if isinstance(low, int) and isinstance(high, int):
            if low > high:
                errors.append(
                    ProtocolError(
                        (*where, f"min_{unit}"),
                        f"cannot be more than of_{unit} ({high})",
                    )
                )
            if duration and high * period_days > duration:
                errors.append(
                    ProtocolError(
                        (*where, f"of_{unit}"),
                        f"{high} {unit} do not fit in the study's duration_days ({duration})",
                    )
                )
    nudge = section.get("nudge")
    if isinstance(nudge, dict) and "text" in nudge:
        errors += _text_languages_errors(nudge["text"], (*ROOT, "nudge", "text"), _languages(doc))
    return errors
