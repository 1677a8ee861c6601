"""The classifier_labels table and the codebook's classifier entries.

One row per stored classifier label of an exported participant (pseudonymous ids, classifier,
version, judge, outcome, level code; never text). The codebook describes each classifier
version and judge that appears: the question, the levels as value labels, and its validation
against human coders from the coding pages (studyplatform/classifiers/coding.py), or a note
that none exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from studyplatform.classifiers.coding import classifier_validation, validation_summary
from studyplatform.classifiers.library import protocol_classifiers
from studyplatform.classifiers.models import ClassifierLabel

from .. import codebook as cb

BATCH = 5000


def classifier_label_batches(builder, people) -> Iterator[list[dict[str, Any]]]:
    """Rows of the classifier_labels table for the exported participants, in batches."""
    labels = (
        ClassifierLabel.objects.filter(study=builder.study, participant_id__in=list(people))
        .order_by("participant_id", "conversation_id", "message_id", "classifier_key", "pk")
        .values_list(
            "participant_id",
            "conversation_id",
            "message_id",
            "classifier_key",
            "classifier_version",
            "scope",
            "judge_endpoint",
            "judge_model",
            "anonymized",
            "outcome",
            "label",
        )
    )
    batch: list[dict[str, Any]] = []
    for row in labels.iterator(chunk_size=BATCH):
        (person_pk, conversation, message, key, version, scope, endpoint, model) = row[:8]
        anonymized, outcome, label = row[8:]
        batch.append(
            {
                "message_id": builder.pseudo("message", message) if message else None,
                "conversation_id": builder.pseudo("conversation", conversation),
                "participant_id": people[person_pk].pid,
                "classifier": key,
                "classifier_version": version,
                "scope": scope,
                "judge": f"{endpoint}/{model}",
                "anonymized_text": anonymized,
                "outcome": outcome,
                "label": label or None,
            }
        )
        if len(batch) >= BATCH:
            yield batch
            batch = []
    yield batch


def classifier_entries(study, versions, people) -> list[dict[str, Any]]:
    """Codebook entries for every (classifier version, judge) with labels in the export: the
    definition as the study's protocol versions held it, and its validation figures."""
    used = (
        ClassifierLabel.objects.filter(study=study, participant_id__in=list(people))
        .values_list("classifier_key", "classifier_version", "judge_endpoint", "judge_model")
        .distinct()
        .order_by("classifier_key", "classifier_version", "judge_endpoint", "judge_model")
    )
    definitions: dict[str, dict[str, Any]] = {}
    for version in versions:
        section = protocol_classifiers((version.content or {}).get("classifiers"))
        for definition in section.definitions if section else ():
            definitions.setdefault(definition.ref, definition.summary())
    validation = classifier_validation(study)
    entries = []
    for key, number, endpoint, model in used:
        ref = f"{key}@{number}"
        summary = definitions.get(ref)
        if summary is None:
            continue  # a definition no protocol version of this study holds: nothing to say
        judge = f"{endpoint}/{model}"
        figures = validation.get(ref)
        if figures and figures["judge"] != judge:
            figures = None  # validation holds for the judge that was coded against only
        entries.append(
            cb.classifier_entry(
                summary, judge=judge, validation=figures, note=validation_summary(figures)
            )
        )
    return entries
