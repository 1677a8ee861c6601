"""The `compliance` table of an export: one row per participant and local day of the
requirement's counted periods, with the day's use and whether its period met the minimum.

Computed at export time from the messages with the same function as the compliance app and
the usage features (``analysis.features.usage.daily_usage``), not read from the app's cached
rows, so the table is what the messages say. Days without a message are rows too (0 minutes):
a missed day is data. Rows run from the enrollment day to the last counted day, or to today
(the export's day in the participant's calendar), or to the withdrawal day, whichever is first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from studyplatform.compliance.rules import period_index, progress
from studyplatform.compliance.services import daily_usage_of, requirement_for
from studyplatform.participants.models import Participant
from surveys import schedule_rules
from surveys.engine import context_for

from .usage import BATCH, _local_day

if TYPE_CHECKING:
    from .builder import Builder, Person


def compliance_rows(
    builder: Builder, participants: Sequence[Participant], people: Mapping[int, Person], shape
) -> Iterator[list[dict[str, Any]]]:
    study = builder.study
    requirement = requirement_for(study)
    if requirement is None:
        yield []
        return
    relative = shape.dates == "relative"
    now = timezone.now()
    counted = requirement.counted_periods(study.duration_days)
    batch: list[dict[str, Any]] = []
    for participant in participants:
        person = people.get(participant.pk)
        if person is None:
            continue
        ctx = context_for(participant, study.duration_days, study.allocation_seed)
        day0 = schedule_rules.local_date_of(ctx, participant.enrolled_at)
        last = min(
            day0 + dt.timedelta(days=counted * requirement.period_days - 1),
            schedule_rules.local_date_of(ctx, participant.withdrawn_at or now),
        )
        usage = daily_usage_of(participant)
        state = progress(
            requirement,
            day0=day0,
            today=schedule_rules.local_date_of(ctx, now),
            duration_days=study.duration_days,
            usage=usage,
        )
        met = {p.index: p.met if p.closed else None for p in state.periods}
        day = day0
        while day <= last:
            minutes, messages = usage.get(day, (0.0, 0))
            index = period_index(requirement, day0, day)
            row: dict[str, Any] = {"participant_id": person.pid}
            row.update(_local_day(person, "", day, relative))
            row.update(
                {
                    "period": index,
                    "active_minutes": round(float(minutes), 4),
                    "messages": int(messages),
                    "period_met": met.get(index),
                }
            )
            batch.append(row)
            if len(batch) >= BATCH:
                yield batch
                batch = []
            day += dt.timedelta(days=1)
    yield batch
