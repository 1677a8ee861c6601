"""Daily conversation tasks: the meaning checks of the protocol's `tasks` section and the rule
that picks a participant's task for a study day.

Pure Python (no Django): the validator calls :func:`task_errors`, the surveys app (which owns
participant-local study days) calls :func:`task_list_for_arm` and :func:`task_for_day`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass
from typing import Any

from .yaml_lines import PathParts

RULES = ("in_order", "random", "by_date")


@dataclass(frozen=True)
class DailyTask:
    """The task one participant gets on one study day."""

    list_key: str
    key: str
    text: Any  # a string or {language: string}, as written in the protocol
    open_new_conversation: bool


def task_list_for_arm(protocol: dict, arm_key: str) -> dict | None:
    """The task list the arm `arm_key` names with `tasks:`, or None.

    Factor levels (a later addition) will name a list the same way; an arm that names none
    then takes the list of its levels. Today only the arm's own key is read.
    """
    arm = next((a for a in protocol.get("arms", []) if a.get("key") == arm_key), None)
    if not arm or not arm.get("tasks"):
        return None
    return next((t for t in protocol.get("tasks", []) if t.get("key") == arm["tasks"]), None)


def _shuffled(count: int, seed: str, cycle: int) -> list[int]:
    # sha256 rather than hash(): Python salts str hashes per process, and the order must be the
    # same on every worker and after every restart.
    digest = hashlib.sha256(f"{seed}:{cycle}".encode()).digest()
    order = list(range(count))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


def task_for_day(
    task_list: dict, *, study_day: int, local_date: dt.date, seed: str
) -> DailyTask | None:
    """The task of `task_list` for study day `study_day` (0 = the enrollment day) on the
    participant's local date `local_date`; None when the list has nothing for that day.

    `seed` makes `random` reproducible per participant (the caller passes a value that is
    stable for the participant and the list). Lists shorter than the study start again: in order
    from the first item, or in a new shuffle, so a `random` list never repeats an item before
    every item was shown.
    """
    items = task_list["items"]
    if study_day < 0 or not items:
        return None
    rule = task_list["rule"]
    if rule == "by_date":
        wanted = local_date.isoformat()
        item = next((i for i in items if i.get("date") == wanted), None)
    elif rule == "in_order":
        item = items[study_day % len(items)]
    elif rule == "random":
        cycle, position = divmod(study_day, len(items))
        item = items[_shuffled(len(items), seed, cycle)[position]]
    else:  # the schema allows no other value
        raise ValueError(f"unknown task rule {rule!r}")
    if item is None:
        return None
    return DailyTask(
        list_key=task_list["key"],
        key=item["key"],
        text=item["text"],
        open_new_conversation=bool(
            item.get("open_new_conversation", task_list.get("open_new_conversation", False))
        ),
    )


def task_errors(doc: dict, languages: list[str]) -> list[tuple[PathParts, str]]:
    """(place, message) for each problem with the `tasks` section and the arms' `tasks` keys,
    in a document whose structure the schema accepted."""
    errors: list[tuple[PathParts, str]] = []
    lists = doc.get("tasks") or []
    seen_lists: set[str] = set()
    for i, task_list in enumerate(lists):
        path: PathParts = ("tasks", i)
        if task_list["key"] in seen_lists:
            errors.append(((*path, "key"), "duplicate key"))
        seen_lists.add(task_list["key"])
        by_date = task_list["rule"] == "by_date"
        seen_items: set[str] = set()
        seen_dates: dict[str, int] = {}
        for j, item in enumerate(task_list["items"]):
            item_path: PathParts = (*path, "items", j)
            if item["key"] in seen_items:
                errors.append(((*item_path, "key"), "duplicate key"))
            seen_items.add(item["key"])
            text = item["text"]
            if isinstance(text, dict):
                missing = [lang for lang in languages if not text.get(lang)]
                if missing:
                    errors.append(((*item_path, "text"), "missing text for: " + ", ".join(missing)))
            date = item.get("date")
            if by_date and date is None:
                errors.append(((*item_path, "date"), "is required when the list's rule is by_date"))
            elif not by_date and date is not None:
                errors.append(
                    (
                        (*item_path, "date"),
                        f"only applies when the list's rule is by_date (this list's rule is "
                        f"{task_list['rule']}); remove it",
                    )
                )
            elif date is not None:
                try:
                    dt.date.fromisoformat(date)
                except ValueError:
                    errors.append(((*item_path, "date"), f"{date!r} is not a calendar date"))
                    continue
                if date in seen_dates:
                    errors.append(
                        (
                            (*item_path, "date"),
                            f"another item of this list (items[{seen_dates[date]}]) is already "
                            f"for {date}",
                        )
                    )
                seen_dates.setdefault(date, j)
    keys = [t["key"] for t in lists]
    for i, arm in enumerate(doc.get("arms", [])):
        wanted = arm.get("tasks")
        if wanted is not None and wanted not in keys:
            known = ", ".join(keys) if keys else "none; add a top-level tasks section"
            errors.append(
                (("arms", i, "tasks"), f"no task list with key {wanted!r} (task lists: {known})")
            )
    return errors
