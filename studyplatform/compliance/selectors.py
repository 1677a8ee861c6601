"""Reads for the researcher console: each participant's standing against the usage requirement
and, per period, how many met it. A fixed number of queries whatever the number of shown
participants (participants, their cached days)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from studyplatform.participants.models import Participant
from studyplatform.studies.models import Study
from surveys import schedule_rules
from surveys.engine import context_for

from .models import ComplianceDay
from .rules import Progress, Requirement, progress, requirement_from_protocol


@dataclass
class ParticipantStanding:
    code: str
    status: str
    is_pilot: bool
    progress: Progress

    @property
    def closed_counted(self) -> int:
        return sum(1 for p in self.progress.periods if p.closed and p.counted)


@dataclass
class StudyCompliance:
    requirement: Requirement
    counted: int
    rows: list[ParticipantStanding]
    total_participants: int
    # per counted period index: participants who met it / whose period had closed
    met_per_period: list[int] = field(default_factory=list)
    closed_per_period: list[int] = field(default_factory=list)

    @property
    def limited(self) -> bool:
        return len(self.rows) < self.total_participants


def study_compliance(study: Study, *, now: dt.datetime, limit: int = 200) -> StudyCompliance | None:
    """The ``limit`` most recently enrolled participants' standing, or None when the study sets
    no usage requirement. Withdrawn participants are listed up to their withdrawal."""
    requirement = requirement_from_protocol(study.protocol)
    if requirement is None:
        return None
    people = Participant.objects.filter(study=study).order_by("-enrolled_at", "-id")
    total = people.count()
    shown = list(people[:limit])
    usage: dict[int, dict[dt.date, tuple[float, int]]] = defaultdict(dict)
    for pid, day, minutes, messages in ComplianceDay.objects.filter(
        participant_id__in=[p.pk for p in shown]
    ).values_list("participant_id", "date", "active_minutes", "messages"):
        usage[pid][day] = (minutes, messages)
    counted = requirement.counted_periods(study.duration_days)
    met = [0] * counted
    closed = [0] * counted
    rows = []
    for participant in shown:
        ctx = context_for(participant, study.duration_days, study.allocation_seed)
        state = progress(
            requirement,
            day0=schedule_rules.local_date_of(ctx, participant.enrolled_at),
            today=schedule_rules.local_date_of(ctx, participant.withdrawn_at or now),
            duration_days=study.duration_days,
            usage=usage[participant.pk],
        )
        for period in state.periods:
            if period.counted and period.closed:
                closed[period.index] += 1
                met[period.index] += period.met
        rows.append(
            ParticipantStanding(participant.code, participant.status, participant.is_pilot, state)
        )
    return StudyCompliance(requirement, counted, rows, total, met, closed)
