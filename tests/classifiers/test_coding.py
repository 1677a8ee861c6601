"""Coding samples: a blinded, seeded sample of a classifier's labels, human labels, agreement,
and the API's permissions and bad input. Labels come from real runs with the loopback judge."""

from __future__ import annotations

import pytest

from studyplatform.classifiers.coding import (
    classifier_validation,
    coding_agreement,
    coding_sample_create,
    human_label_record,
    validation_summary,
)
from studyplatform.classifiers.models import ClassifierLabel, CodingSample, HumanLabel
from studyplatform.classifiers.services import classification_run_create
from studyplatform.classifiers.tasks import classification_run_task
from studyplatform.core.models import AuditEvent
from tests.classifiers.conftest import CONSENTING

pytestmark = pytest.mark.django_db

# What the judge answers about each user message (the fake upstream reads the directive).
ANSWERS = ["yes", "yes", "no", "no", "yes", "no", "no", "yes", "no", "no"]


def labelled_study(study, enroll, chat, owner, answers=ANSWERS, **run):
    person = enroll(study, choices=CONSENTING, email="ana.souza@example.org")
    turns = []
    for i, answer in enumerate(answers):
        turns += [f"message {i} from Ana Souza [[reply: {answer}]]", f"reply {i}"]
    chat(person, turns)
    created = classification_run_create(
        study=study, created_by=owner, data={"max_judge_calls": 1000, **run}, enqueue=False
    )
    classification_run_task(created.pk)
    return person


def url(study, *parts) -> str:
    return f"/api/studies/{study.slug}/coding-samples/" + "".join(f"{p}/" for p in parts)


def test_a_sample_is_seeded_stored_and_the_same_for_every_coder(
    classified_study, enroll, chat, owner, member_of, api_as
):
    # given: ten labelled user messages
    labelled_study(classified_study, enroll, chat, owner)
    analyst = member_of(classified_study, "analyst")
    # when: a sample of 6 with seed 11 is drawn twice over the API
    client = api_as(owner)
    first = client.post(url(classified_study), {"classifier": "loneliness", "size": 6, "seed": 11})
    again = client.post(url(classified_study), {"classifier": "loneliness", "size": 6, "seed": 11})
    # then: the same units in the same order; every coder reads the same sample
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["classifier"] == "loneliness@1" and body["size"] == 6 and body["seed"] == 11
    a, b = (CodingSample.objects.get(pk=r.json()["id"]) for r in (first, again))
    assert [i.classifier_label_id for i in a.items.all()] == [
        i.classifier_label_id for i in b.items.all()
    ]
    seen_by_owner = client.get(url(classified_study, a.pk)).json()["items"]
    seen_by_analyst = api_as(analyst).get(url(classified_study, a.pk)).json()["items"]
    assert [i["turns"] for i in seen_by_owner] == [i["turns"] for i in seen_by_analyst]
    event = AuditEvent.objects.filter(action="coding_sample.created").first()
    assert event.actor == owner and event.data["classifier"] == "loneliness@1"
    assert event.data["seed"] == 11 and event.data["size"] == 6


def test_coders_never_see_the_classifiers_answer_and_read_what_the_judge_read(
    make_classified_study, enroll, chat, owner, api_as
):
    # given: a run that sent anonymized text
    study = make_classified_study(text="anonymized")
    labelled_study(study, enroll, chat, owner, answers=["yes"])
    sample = coding_sample_create(study=study, created_by=owner, data={"classifier": "loneliness"})
    # when
    body = api_as(owner).get(url(study, sample.pk)).json()
    # then: the unit's text as the judge saw it (placeholders), and no classifier output
    [item] = body["items"]
    [turn] = item["turns"]
    assert turn["role"] == "user"
    assert "Ana Souza" not in turn["text"] and "[PERSON_1]" in turn["text"]
    assert item["my_label"] is None
    assert set(item) == {"id", "position", "turns", "my_label"}


def test_agreement_compares_the_classifier_with_each_coder_and_the_coders(
    classified_study, enroll, chat, owner, member_of
):
    # given: all ten units coded by two people
    labelled_study(classified_study, enroll, chat, owner)
    analyst = member_of(classified_study, "analyst", username="bea")
    sample = coding_sample_create(
        study=classified_study, created_by=owner, data={"classifier": "loneliness", "size": 10}
    )
    machine = {i.pk: i.classifier_label.label for i in sample.items.all()}
    items = list(sample.items.all())
    # the owner agrees with the classifier everywhere; bea flips the first two units
    for item in items:
        human_label_record(item=item, coder=owner, label=machine[item.pk])
        flipped = {"yes": "no", "no": "yes"}[machine[item.pk]]
        human_label_record(
            item=item, coder=analyst, label=flipped if item.position <= 2 else machine[item.pk]
        )
    # when
    figures = coding_agreement(sample, resamples=200)
    # then
    by_coder = {row["coder"]: row for row in figures["classifier_vs_coder"]}
    assert by_coder[owner.username]["kappa"]["value"] == pytest.approx(1.0)
    assert by_coder[owner.username]["n"] == 10
    bea = by_coder["bea"]
    assert bea["percent_agreement"] == pytest.approx(0.8)
    assert bea["kappa"]["ci_low"] is not None and bea["kappa"]["ci_low"] <= bea["kappa"]["value"]
    [pair] = figures["between_coders"]
    assert pair["n"] == 10 and pair["percent_agreement"] == pytest.approx(0.8)
    assert figures["coders"] == [
        {"coder": "bea", "coded": 10},
        {"coder": owner.username, "coded": 10},
    ]
    # and the classifier's validation figures say so; a classifier without codes says none exist
    validation = classifier_validation(classified_study)
    assert list(validation) == ["loneliness@1"]
    line = validation_summary(validation["loneliness@1"])
    assert "kappa 1.00" in line and "vs bea (n=10)" in line
    assert validation_summary(None).startswith("No validation against human coders")


def test_recoding_replaces_a_label_and_bad_labels_are_refused(
    classified_study, enroll, chat, owner, api_as
):
    labelled_study(classified_study, enroll, chat, owner, answers=["yes", "no"])
    sample = coding_sample_create(
        study=classified_study, created_by=owner, data={"classifier": "loneliness"}
    )
    item = sample.items.first()
    client = api_as(owner)
    label_url = url(classified_study, sample.pk, "items", item.pk, "label")
    assert client.put(label_url, {"label": "yes"}, format="json").json() == {"label": "yes"}
    assert client.put(label_url, {"label": "no"}, format="json").status_code == 200
    assert list(HumanLabel.objects.values_list("label", flat=True)) == ["no"]
    [listed] = client.get(url(classified_study)).json()
    assert listed["coded_by_me"] == 1 and listed["size"] == 2
    bad = client.put(label_url, {"label": "maybe"}, format="json")
    assert bad.status_code == 400 and bad.json() == {"label": ["must be one of: yes, no"]}
    extra = client.put(label_url, {"label": "yes", "why": "x"}, format="json")
    assert extra.status_code == 400 and extra.json() == {"body": ["unknown fields: why"]}
    assert list(HumanLabel.objects.values_list("label", flat=True)) == ["no"]


@pytest.mark.parametrize(
    "data,field,message",
    [
        (
            {"classifier": "nope"},
            "classifier",
            "must be one of the protocol's classifiers: loneliness",
        ),
        ({"classifier": "loneliness", "size": 0}, "size", "must be between 1 and 1000"),
        ({"classifier": "loneliness", "seed": "x"}, "seed", "must be a whole number"),
        ({"classifier": "loneliness", "colour": 1}, "body", "unknown fields: colour"),
    ],
)
def test_bad_sample_requests_name_the_field_and_write_nothing(
    classified_study, enroll, chat, owner, api_as, data, field, message
):
    labelled_study(classified_study, enroll, chat, owner, answers=["yes"])
    response = api_as(owner).post(url(classified_study), data, format="json")
    assert response.status_code == 400
    assert response.json()[field] == [message]
    assert not CodingSample.objects.exists()
    assert not AuditEvent.objects.filter(action="coding_sample.created").exists()


def test_a_classifier_without_labels_cannot_be_sampled(classified_study, owner, api_as):
    response = api_as(owner).post(url(classified_study), {"classifier": "loneliness"})
    assert response.status_code == 400
    assert response.json() == {
        "classifier": ["loneliness@1 has no labels yet: run it before coding a sample"]
    }


def test_only_labelled_units_are_sampled(classified_study, enroll, chat, owner):
    # an unparseable answer is not something a coder can be compared with
    labelled_study(classified_study, enroll, chat, owner, answers=["yes", "perhaps"])
    assert ClassifierLabel.objects.filter(outcome="unparseable").count() == 1
    sample = coding_sample_create(
        study=classified_study, created_by=owner, data={"classifier": "loneliness"}
    )
    assert [i.classifier_label.outcome for i in sample.items.all()] == ["label"]


def test_another_studys_researcher_gets_404_and_a_role_without_analysis_403(
    classified_study, make_classified_study, enroll, chat, owner, member_of, api_as
):
    labelled_study(classified_study, enroll, chat, owner, answers=["yes"])
    sample = coding_sample_create(
        study=classified_study, created_by=owner, data={"classifier": "loneliness"}
    )
    item = sample.items.get()
    other = make_classified_study(slug="elsewhere")
    outsider = api_as(member_of(other, "owner", username="outsider"))
    for path in (
        url(classified_study),
        url(classified_study, sample.pk),
        url(classified_study, sample.pk, "agreement"),
    ):
        assert outsider.get(path).status_code == 404
    label_url = url(classified_study, sample.pk, "items", item.pk, "label")
    assert outsider.put(label_url, {"label": "yes"}, format="json").status_code == 404
    assert outsider.post(url(classified_study), {"classifier": "loneliness"}).status_code == 404
    # the sample id under the outsider's own study is not found either
    assert outsider.get(url(other, sample.pk)).status_code == 404
    monitor = api_as(member_of(classified_study, "monitor", username="mo"))
    assert monitor.get(url(classified_study, sample.pk)).status_code == 403
    assert monitor.put(label_url, {"label": "yes"}, format="json").status_code == 403
    assert not HumanLabel.objects.exists() and CodingSample.objects.count() == 1


def test_the_agreement_endpoint_returns_the_figures(classified_study, enroll, chat, owner, api_as):
    labelled_study(classified_study, enroll, chat, owner)
    sample = coding_sample_create(
        study=classified_study, created_by=owner, data={"classifier": "loneliness", "size": 10}
    )
    for item in sample.items.all():
        human_label_record(item=item, coder=owner, label="yes")
    body = api_as(owner).get(url(classified_study, sample.pk, "agreement")).json()
    [row] = body["classifier_vs_coder"]
    # the owner said yes to all 10; the classifier said yes to 4: precision of "yes" (the
    # classifier's, against the coder) is 1, recall 0.4
    assert row["precision"]["value"] == pytest.approx(1.0)
    assert row["recall"]["value"] == pytest.approx(0.4)
    assert row["averaging"] == "positive level 'yes'"
    assert body["between_coders"] == []


def test_withdrawal_with_deletion_removes_the_units_and_their_codes(
    classified_study, enroll, chat, owner
):
    # given: a coded sample of one participant's labels
    from studyplatform.participants.services import participant_withdraw

    person = labelled_study(classified_study, enroll, chat, owner, answers=["yes", "no"])
    sample = coding_sample_create(
        study=classified_study, created_by=owner, data={"classifier": "loneliness"}
    )
    for item in sample.items.all():
        human_label_record(item=item, coder=owner, label="yes")
    # when: the participant withdraws and asks for deletion
    participant_withdraw(participant=person, mode="delete", by="participant")
    # then: no unit, code or classifier label of theirs is left; the sample row stays (empty)
    assert not sample.items.exists()
    assert not HumanLabel.objects.exists()
    assert not ClassifierLabel.objects.filter(participant=person).exists()
    assert coding_agreement(sample, resamples=50)["units"] == 0
