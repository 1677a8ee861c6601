"""Simulated cohorts (``manage.py simulate_study``): pilot participants enrolled and consented
through this app's own rules, in bulk.

A simulated cohort has hundreds of participants, so rows are bulk-inserted rather than passed
one by one through ``participant_enroll`` (which also screens, randomizes, schedules surveys and
sends email, none of which a simulation wants). What must stay identical to a real enrollment
is built by the same code: the consent record (``_consent_record``). Participants are pilots, so
exports and the survey engine leave them alone.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence

from django.db import transaction

from studyplatform.core.audit import audit_record
from studyplatform.studies.models import Arm, Study
from studyplatform.studies.selectors import current_consent_for

from ..models import Allocation, ConsentRecord, Identity, Participant
from .enrollment import _consent_record


class SimulationError(ValueError):
    pass


@transaction.atomic
def simulated_participants_create(
    *, study: Study, enrolled_at: Sequence[dt.datetime], arms: Sequence[Arm], actor: str
) -> list[Participant]:
    """One consented, allocated pilot participant per ``enrolled_at``, in ``arms[i]``.

    Consent is to the study's current English document with every checkbox ticked, signed at
    enrollment. One audit event records the simulation (how many, by whom).
    """
    if len(arms) != len(enrolled_at):
        raise SimulationError("give one arm per participant")
    document = current_consent_for(study, "en")
    if document is None:
        raise SimulationError("the study has no consent document")
    version = study.current_version
    people = Participant.objects.bulk_create(
        [
            Participant(
                study=study,
                is_pilot=True,
                language="en",
                timezone=study.timezone,
                enrolled_at=at,
                enrollment_version=version,
                screener_answers={"simulated": True},
                last_seen_at=at,
            )
            for at in enrolled_at
        ]
    )
    Identity.objects.bulk_create(
        [
            Identity(participant=p, study=study, date_shift_days=secrets.randbelow(364) + 1)
            for p in people
        ]
    )
    choices = {c["key"]: True for c in document.checkboxes}
    ConsentRecord.objects.bulk_create(
        [
            _consent_record(
                participant=p,
                document=document,
                choices=choices,
                signature_name="Simulated participant",
                signed_at=p.enrolled_at,
                protocol_version=version,
            )
            for p in people
        ]
    )
    Allocation.objects.bulk_create(
        [
            Allocation(
                participant=p,
                arm=arm,
                method="simulated",
                sequence_number=i,
                allocated_at=p.enrolled_at,
                protocol_version=version,
            )
            for i, (p, arm) in enumerate(zip(people, arms, strict=True))
        ]
    )
    audit_record(
        actor=actor,
        action="participant.simulate",
        target=study,
        study_slug=study.slug,
        data={"participants": len(people)},
    )
    return people
