"""Loading a study's data into the plain pandas frames the pure analysis code takes.

The only Django side of the analysis pipeline: a handful of ``values_list`` queries (one per
table, joins done in SQL, no per-row queries), shaped as ``docs/usage_features.md`` and
``docs/analysis.md`` describe. Message text is encrypted at rest; it is decrypted only when text
markers are asked for, because decrypting every message costs time and puts content in memory
that the usage features never need.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import pandas as pd
from django.db.models import F, Max

from analysis.linking import assign_waves
from analysis.pipeline import StudyFrames
from studyplatform.chat.models import Message
from studyplatform.classifiers.coding import classifier_validation, validation_summary
from studyplatform.classifiers.library import protocol_classifiers
from studyplatform.classifiers.models import ClassifierLabel
from studyplatform.participants.models import Participant
from studyplatform.studies.models import Study
from surveys.models import Invitation, Response

__all__ = ["StudyFrames", "frames_hash", "load_study_frames"]


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


# Screener question types whose answers are one number or category per person. Free text is
# left out (it can identify someone and is no covariate); multiple choice is a set, not a level.
COVARIATE_TYPES = ("number", "yes_no", "single_choice")


def participant_covariates(protocol: dict, answers: list[dict]) -> pd.DataFrame:
    """``screener.<key>`` and ``stratum.<factor>`` columns, one row per answers dict.

    ``screener.<key>``: the answer to each number / yes-no / single-choice question of the
    protocol's screener (missing when not answered). ``stratum.<factor>``: for a stratified
    allocation, the level of each stratification factor as the allocation saw it (the answer
    as text, "None" when unanswered, exactly :func:`~studyplatform.participants.allocation.
    stratum_key`), so models adjust for the strata the randomisation balanced within.
    """
    questions = (protocol.get("screener") or {}).get("questions") or []
    allocation = protocol.get("allocation") or {}
    stratified = allocation.get("method") == "stratified_blocks"
    strata = (allocation.get("strata") or []) if stratified else []
    columns: dict[str, list] = {}
    for question in questions:
        key, kind = question["key"], question["type"]
        if kind not in COVARIATE_TYPES:
            continue
        values = [a.get(key) for a in answers]
        if kind == "number":
            numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
            columns[f"screener.{key}"] = numbers.tolist()
        else:
            # Categories as text, so every model codes them as factors (yes/no too).
            columns[f"screener.{key}"] = [None if v is None else str(v) for v in values]
    for factor in strata:
        columns[f"stratum.{factor}"] = [str(a.get(factor)) for a in answers]
    return pd.DataFrame(columns, index=range(len(answers)))


def load_study_frames(
    study: Study,
    *,
    include_pilot: bool = True,
    text: bool = False,
    instruments: Iterable[str] | None = None,
) -> StudyFrames:
    """The study's participants, messages, invitations and submitted responses as frames.

    ``instruments`` limits responses to those instruments (the plan's outcomes), so daily EMA
    answers do not become survey occasions of their own.
    """
    people = Participant.objects.filter(study=study)
    if not include_pilot:
        people = people.filter(is_pilot=False)
    rows = list(
        people.order_by("code").values_list(
            "code",
            "timezone",
            "enrolled_at",
            "language",
            "allocation__arm__key",
            "status",
            "screener_answers",
        )
    )
    participants = pd.DataFrame(
        [row[:-1] for row in rows],
        columns=["participant", "timezone", "enrolled_at", "language", "arm", "status"],
    )
    participants["enrolled_at"] = _utc(participants["enrolled_at"])
    covariates = participant_covariates(study.protocol or {}, [row[-1] or {} for row in rows])
    participants = pd.concat([participants, covariates], axis=1)

    fields = [
        "participant__code",
        "conversation_id",
        "role",
        "created_at",
        "latency_ms",
        "imported",
    ]
    if text:
        fields.append("content")
    rows = list(Message.objects.filter(participant__in=people).order_by("id").values_list(*fields))
    messages = pd.DataFrame(
        rows,
        columns=["participant", "conversation", "role", "created_at", "latency_ms", "imported"]
        + (["text"] if text else []),
    )
    messages["conversation"] = messages["conversation"].astype(str)
    messages["created_at"] = _utc(messages["created_at"])
    messages["latency_ms"] = pd.to_numeric(messages["latency_ms"]).astype(float)
    messages["imported"] = messages["imported"].astype(bool)
    if not text:
        messages["text"] = None

    invitations = pd.DataFrame(
        list(
            Invitation.objects.filter(participant__in=people)
            .order_by("id")
            .values_list(
                "participant__code",
                "entry_key",
                "occurrence_key",
                "wave",
                "status",
                "opens_at",
                "completed_at",
            )
        ),
        columns=[
            "participant",
            "entry",
            "occurrence",
            "entry_wave",
            "status",
            "opens_at",
            "completed_at",
        ],
    )
    invitations["opens_at"] = _utc(invitations["opens_at"])
    invitations["completed_at"] = _utc(invitations["completed_at"])
    invitations["wave"] = assign_waves(invitations, participants)

    submitted = Response.objects.filter(
        participant__in=people,
        status=Response.Status.SUBMITTED,
        superseded_by__isnull=True,  # a correction replaces the answer it supersedes
    )
    if instruments is not None:
        submitted = submitted.filter(instrument_key__in=list(instruments))
    responses = pd.DataFrame(
        list(
            submitted.order_by("id").values_list(
                "participant__code",
                "invitation__entry_key",
                "invitation__occurrence_key",
                "invitation__opens_at",
                "submitted_at",
                "instrument_key",
                "scores",
            )
        ),
        columns=[
            "participant",
            "entry",
            "occurrence",
            "opens_at",
            "submitted_at",
            "instrument",
            "scores",
        ],
    )
    responses["opens_at"] = _utc(responses["opens_at"])
    responses["submitted_at"] = _utc(responses["submitted_at"])
    responses["wave"] = assign_waves(responses, participants)
    if instruments is not None:
        # Only occasions that belong to the analysis count as invitations for compliance.
        entries = set(responses["entry"])
        invitations = invitations[invitations["entry"].isin(entries)].reset_index(drop=True)
    labels = classifier_label_frame(study, people)
    return StudyFrames(participants, messages, invitations, responses, labels)


def classifier_feature_notes(study: Study, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """For each ``cls_...`` column among ``names`` (the plan's predictors and outcomes): the
    classifier it comes from, its judge, and its validation against human coders (figures and a
    one-line summary, or a note that none exists), for the report."""
    section = protocol_classifiers((study.protocol or {}).get("classifiers"))
    if section is None:
        return {}
    validation = classifier_validation(study)
    notes: dict[str, dict[str, Any]] = {}
    for name in names:
        for definition in section.definitions:
            base = f"cls_{definition.key}"
            if not (name.startswith(base + "_") and name.endswith("_rate")):
                continue
            judge = definition.judge.name
            figures = validation.get(definition.ref)
            if figures and figures["judge"] != judge:
                figures = None  # figures hold only for the judge that was coded against
            notes[name] = {
                "classifier": definition.ref,
                "judge": judge,
                "validation": figures,
                "summary": validation_summary(figures),
            }
    return notes


def classifier_label_frame(study: Study, people) -> pd.DataFrame | None:
    """``participant, at, feature, hit``: the labels of the classifiers in the study's current
    protocol (each with its own version and judge), for analysis/features/classifiers.py.

    ``feature`` is ``cls_<key>``: the unit has the first level (binary: "yes" in the shipped
    set) or any level above the first (ordinal: above "none"). A categorical classifier gives
    ``cls_<key>_<level>`` per level. A unit a gate left unasked (``gated_out``: the parent said
    the cue is absent) counts as without the feature; unparseable answers are left out. A
    message's label is dated by the message, a conversation's by its last message. None when
    the protocol has no classifiers.
    """
    section = protocol_classifiers((study.protocol or {}).get("classifiers"))
    if section is None:
        return None
    records: list[tuple[str, Any, str, bool]] = []
    for definition in section.definitions:
        rows = ClassifierLabel.objects.filter(
            study=study,
            participant__in=people,
            classifier_key=definition.key,
            classifier_version=definition.version,
            judge_endpoint=definition.judge.endpoint,
            judge_model=definition.judge.model,
            outcome__in=(ClassifierLabel.Outcome.LABEL, ClassifierLabel.Outcome.GATED_OUT),
        )
        if definition.scope == "conversation":
            rows = rows.annotate(at=Max("conversation__messages__created_at"))
        else:
            rows = rows.annotate(at=F("message__created_at"))
        codes = list(definition.codes)
        for code, at, label in rows.values_list("participant__code", "at", "label").order_by("pk"):
            if at is None:
                continue
            base = f"cls_{definition.key}"
            if definition.output_type == "binary":
                records.append((code, at, base, label == codes[0]))
            elif definition.output_type == "ordinal":
                records.append((code, at, base, label in codes[1:]))
            else:
                for level in codes:
                    records.append((code, at, f"{base}_{level}", label == level))
    frame = pd.DataFrame(records, columns=["participant", "at", "feature", "hit"])
    frame["at"] = _utc(frame["at"])
    frame["hit"] = frame["hit"].astype(bool)
    return frame


def _canonical(frame: pd.DataFrame, keys: list[str]) -> bytes:
    """CSV bytes that depend only on the data: sorted rows, ISO UTC times, sorted JSON keys."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        elif out[column].dtype == object:
            out[column] = out[column].map(
                lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
            )
    out = out.sort_values(keys, kind="stable") if len(out) else out
    return out.to_csv(index=False, lineterminator="\n").encode("utf-8")


def frames_hash(frames: StudyFrames) -> str:
    """SHA-256 over the canonical CSV of every input frame, in a fixed order."""
    digest = hashlib.sha256()
    parts = [
        ("participants", frames.participants, ["participant"]),
        ("messages", frames.messages, ["participant", "created_at", "role", "conversation"]),
        ("invitations", frames.invitations, ["participant", "entry", "occurrence"]),
        ("responses", frames.responses, ["participant", "entry", "occurrence", "instrument"]),
    ]
    if frames.classifier_labels is not None:
        parts.append(
            ("classifier_labels", frames.classifier_labels, ["participant", "at", "feature", "hit"])
        )
    for name, frame, keys in parts:
        digest.update(f"--- {name}\n".encode())
        digest.update(_canonical(frame, keys))
    return digest.hexdigest()
