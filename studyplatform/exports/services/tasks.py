"""The `tasks` table of an export: one row per daily conversation task shown to a participant
(surveys.models.TaskAssignment), with the day and times under the export's date policy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from surveys.models import TaskAssignment

from .usage import _local_day

if TYPE_CHECKING:
    from .builder import Builder, Person

BATCH = 2000


def task_rows(builder: Builder, people: Mapping[int, Person]) -> Iterator[list[dict[str, Any]]]:
    relative = builder.options["dates"] == "relative"
    qs = TaskAssignment.objects.filter(study=builder.study).order_by("participant_id", "study_day")
    batch: list[dict[str, Any]] = []
    for row in qs.iterator(chunk_size=BATCH):
        person = people.get(row.participant_id)
        if person is None:  # withdrawn with deletion, or a pilot left out
            continue
        out: dict[str, Any] = {"participant_id": person.pid}
        out.update(_local_day(person, "", row.local_date, relative))
        out["task_list"] = row.list_key
        out["task"] = row.task_key
        out["conversation_offered"] = row.open_new_conversation
        out.update(builder.when(person, "shown", row.shown_at))
        out["conversation_started"] = row.conversation_started_at is not None
        out["conversation_id"] = (
            builder.pseudo("conversation", row.conversation_id) if row.conversation_id else None
        )
        out["chatted_after"] = row.first_message_at is not None
        # An interval, not a time: the same under both date policies. Whole minutes are enough
        # for "how soon after seeing the task" and hide the exact second.
        out["minutes_to_first_message"] = (
            round((row.first_message_at - row.shown_at).total_seconds() / 60)
            if row.first_message_at is not None
            else None
        )
        batch.append(out)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    yield batch
