"""The classification-run API: who may start and read runs, and what bad input answers."""

from __future__ import annotations

import pytest

from studyplatform.classifiers.models import ClassificationRun
from studyplatform.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def url(study, run_id: int | None = None) -> str:
    base = f"/api/studies/{study.slug}/classification-runs/"
    return base if run_id is None else f"{base}{run_id}/"


def post(client, study, data):
    return client.post(url(study), data, format="json")


def test_an_analyst_starts_a_run_and_polls_it(classified_study, member_of, api_as):
    analyst = member_of(classified_study, "analyst")
    client = api_as(analyst)
    response = post(client, classified_study, {"max_judge_calls": 50, "concurrency": 4})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["classifiers"] == ["loneliness@1"]
    assert body["params"]["max_judge_calls"] == 50 and body["params"]["concurrency"] == 4
    assert body["cost"] == {"judge_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    detail = client.get(url(classified_study, body["id"]))
    assert detail.status_code == 200 and detail.json()["id"] == body["id"]
    assert [r["id"] for r in client.get(url(classified_study)).json()] == [body["id"]]
    event = AuditEvent.objects.get(action="classification_run.created")
    assert event.actor == analyst and event.data["classifiers"] == ["loneliness@1"]


def test_another_studys_researcher_gets_404_everywhere(
    classified_study, make_classified_study, member_of, api_as, owner
):
    other_study = make_classified_study(slug="other-study")
    outsider = member_of(other_study, "owner", username="outsider")
    run = ClassificationRun.objects.create(
        study=classified_study, protocol_version=classified_study.current_version
    )
    client = api_as(outsider)
    assert client.get(url(classified_study)).status_code == 404
    assert client.get(url(classified_study, run.pk)).status_code == 404
    assert post(client, classified_study, {"max_judge_calls": 5}).status_code == 404
    assert client.get(f"/api/studies/{classified_study.slug}/classifiers/").status_code == 404
    # and a run id of the first study under the outsider's own study is not found either
    assert client.get(url(other_study, run.pk)).status_code == 404
    assert ClassificationRun.objects.count() == 1


def test_a_role_without_the_analysis_permission_gets_403(classified_study, member_of, api_as):
    monitor = member_of(classified_study, "monitor")
    response = post(api_as(monitor), classified_study, {"max_judge_calls": 5})
    assert response.status_code == 403
    assert not ClassificationRun.objects.exists()


def test_anonymous_requests_are_refused(classified_study, client):
    assert client.get(url(classified_study)).status_code in (401, 403)


@pytest.mark.parametrize(
    "data,field,message",
    [
        ({}, "max_judge_calls", "set a budget: max_judge_calls, max_tokens or both"),
        ({"max_judge_calls": 0}, "max_judge_calls", "must be between 1 and 10000000"),
        ({"max_judge_calls": 10**12}, "max_judge_calls", "must be between 1 and 10000000"),
        ({"max_judge_calls": "ten"}, "max_judge_calls", "must be a whole number"),
        ({"max_judge_calls": True}, "max_judge_calls", "must be a whole number"),
        ({"max_tokens": 10**11}, "max_tokens", "must be between 1 and 10000000000"),
        ({"concurrency": 33}, "concurrency", "must be between 1 and 32"),
        ({"sample": 0}, "sample", "must be between 1 and 100000"),
        ({"seed": -1}, "seed", "must be between 0 and 2147483647"),
        ({"arms": ["nope"]}, "arms", "unknown: nope (known: current, legacy)"),
        ({"arms": "legacy"}, "arms", "must be a list of keys"),
        ({"arms": ["a"] * 51}, "arms", "at most 50 keys"),
        ({"classifiers": ["sycophancy"]}, "classifiers", "unknown: sycophancy (known: loneliness)"),
        ({"date_from": "2026-13-01"}, "date_from", "must be a date as YYYY-MM-DD"),
        ({"date_from": 20260101}, "date_from", "must be a date as YYYY-MM-DD"),
        (
            {"date_from": "2026-02-02", "date_to": "2026-02-01"},
            "date_to",
            "must not be before date_from",
        ),
        ({"text": "plain"}, "text", "must be anonymized or raw"),
        ({"include_pilot": "yes"}, "include_pilot", "must be true or false"),
        ({"endpoint": "http://evil"}, "body", "unknown fields: endpoint"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(classified_study, owner, api_as, data, field, message):
    # a valid budget, unless the budget is what is under test
    body = data if field in ("max_judge_calls", "max_tokens") else {"max_judge_calls": 5, **data}
    response = post(api_as(owner), classified_study, body)
    assert response.status_code == 400
    assert response.json()[field] == [message]
    assert not ClassificationRun.objects.exists()


@pytest.mark.parametrize("body", [[1, 2], "text", {"arms": {"a": 1}}, {"seed": [1]}])
def test_malformed_bodies_never_cause_a_500(classified_study, owner, api_as, body):
    response = post(api_as(owner), classified_study, body)
    assert response.status_code == 400
    assert not ClassificationRun.objects.exists()


def test_a_study_without_classifiers_refuses_runs(study, owner, api_as):
    response = post(api_as(owner), study, {"max_judge_calls": 5})
    assert response.status_code == 400
    assert response.json() == {"classifiers": ["the study's protocol lists no classifiers"]}


def test_the_classifier_list_shows_questions_and_judges(classified_study, owner, api_as):
    response = api_as(owner).get(f"/api/studies/{classified_study.slug}/classifiers/")
    body = response.json()
    assert body["send_to_judge"] is True and body["consent_checkbox"] == "classify_chats"
    [loneliness] = body["classifiers"]
    assert loneliness["ref"] == "loneliness@1"
    assert loneliness["judge"] == {"endpoint": "loopback", "model": "gpt-test-current"}
    assert "loneliness" in loneliness["question"]["en"]
