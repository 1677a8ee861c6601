"""The classifier_labels table and the codebook's classifier entries, with their validation
figures or a note that none exist. Labels come from a real run with the loopback judge."""

from __future__ import annotations

import json

import pytest

from studyplatform.classifiers.coding import coding_sample_create, human_label_record
from studyplatform.classifiers.models import ClassifierLabel
from studyplatform.classifiers.services import classification_run_create
from studyplatform.classifiers.tasks import classification_run_task
from studyplatform.exports.pseudonyms import Pseudonymizer
from tests.classifiers.conftest import (  # noqa: F401 - shared fixtures
    CONSENTING,
    chat,
    loopback_endpoint,
    make_classified_study,
    upstream,
)
from tests.exports.test_export_dataset import build, rows_of, unzip

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(make_classified_study, enroll, owner, request, settings, tmp_path):  # noqa: F811
    settings.MEDIA_ROOT = tmp_path
    study = make_classified_study(["loneliness@1", "support_seeking@1"])
    person = enroll(study, choices=CONSENTING)
    write = request.getfixturevalue("chat")
    write(
        person,
        [
            "I am so alone, Ana Souza here [[reply: yes]]",
            "I am here for you.",
            "Nice weather [[reply: no]]",
            "Indeed.",
        ],
    )
    run = classification_run_create(
        study=study, created_by=owner, data={"max_judge_calls": 100}, enqueue=False
    )
    classification_run_task(run.pk)
    return study, person


def test_labels_are_exported_without_text_and_the_codebook_describes_each_classifier(
    labelled, owner
):
    # given: both classifiers labelled both user messages; loneliness was coded by a person
    study, person = labelled
    sample = coding_sample_create(study=study, created_by=owner, data={"classifier": "loneliness"})
    for item in sample.items.all():
        human_label_record(item=item, coder=owner, label=item.classifier_label.label)
    # when
    export = build(study, owner, tables=["messages", "classifier_labels"], format="csv")
    files = unzip(export)
    # then: one row per label, pseudonymous ids that join the messages table, no text
    rows = rows_of("classifier_labels.csv", files["classifier_labels.csv"])
    assert len(rows) == ClassifierLabel.objects.count() == 4
    message_ids = {r["message_id"] for r in rows_of("messages.csv", files["messages.csv"])}
    assert {r["message_id"] for r in rows} <= message_ids
    pseudonym = Pseudonymizer(bytes.fromhex(export.key))("participant", person.pk)
    assert {r["participant_id"] for r in rows} == {pseudonym}
    assert {(r["classifier"], r["classifier_version"]) for r in rows} == {
        ("loneliness", "1"),
        ("support_seeking", "1"),
    }
    assert {r["judge"] for r in rows} == {
        f"{ClassifierLabel.objects.first().judge_endpoint}/gpt-test-current"
    }
    loneliness = sorted(r["label"] for r in rows if r["classifier"] == "loneliness")
    assert loneliness == ["no", "yes"]
    assert "alone" not in files["classifier_labels.csv"].decode()
    # the codebook: question, levels as value labels, and validation figures or a note
    codebook = json.loads(files["codebook.json"])
    entries = {e["key"]: e for e in codebook["classifiers"]}
    assert entries["loneliness"]["options"] == [
        {"value": "yes", "label": {"en": "Yes", "pt-BR": "Sim"}},
        {"value": "no", "label": {"en": "No", "pt-BR": "Não"}},
    ]
    assert entries["loneliness"]["question"]["en"].startswith("Does")
    validation = entries["loneliness"]["validation"]
    [vs_owner] = validation["classifier_vs_coder"]
    assert vs_owner["n"] == 2 and vs_owner["kappa"]["value"] == pytest.approx(1.0)
    assert "kappa 1.00" in entries["loneliness"]["validation_note"]
    assert entries["support_seeking"]["validation"] is None
    assert entries["support_seeking"]["validation_note"].startswith(
        "No validation against human coders"
    )
    readme = files["README.md"].decode()
    assert "## Conversation classifiers" in readme and "`support_seeking@1`" in readme
    names = [c["name"] for c in codebook["tables"]["classifier_labels"]["columns"]]
    assert names == [
        "message_id",
        "conversation_id",
        "participant_id",
        "classifier",
        "classifier_version",
        "scope",
        "judge",
        "anonymized_text",
        "outcome",
        "label",
    ]


def test_a_withdrawn_participant_who_asked_for_deletion_has_no_labels_in_the_export(
    labelled, owner
):
    from studyplatform.participants.services import participant_withdraw

    study, person = labelled
    participant_withdraw(participant=person, mode="delete", by="participant")
    export = build(study, owner, tables=["classifier_labels"], format="csv")
    rows = rows_of("classifier_labels.csv", unzip(export)["classifier_labels.csv"])
    assert rows == []
    assert "classifiers" not in json.loads(unzip(export)["codebook.json"])
