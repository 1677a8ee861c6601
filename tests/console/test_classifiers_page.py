"""The console's Classifiers page: who sees it, starting a run from the form, and bad input."""

from __future__ import annotations

import pytest

from studyplatform.classifiers.models import ClassificationRun
from tests.classifiers.conftest import loopback_endpoint, make_classified_study, upstream  # noqa: F401

pytestmark = pytest.mark.django_db


def page(study) -> str:
    return f"/console/{study.slug}/classifiers/"


@pytest.fixture
def classified(make_classified_study):  # noqa: F811
    return make_classified_study(["affection_user@1", "romance_user@1"])


@pytest.fixture
def other_study(make_classified_study):  # noqa: F811
    return make_classified_study(slug="someone-else")


def test_an_analyst_sees_the_protocols_classifiers_and_starts_a_run(classified, member_of, client):
    analyst = member_of(classified, "analyst")
    client.force_login(analyst)
    response = client.get(page(classified))
    html = response.content.decode()
    assert response.status_code == 200
    assert "affection_user@1" in html and "romance_user@1" in html
    assert "only where affection_user is yes" in html
    assert f'href="{page(classified)}"' in html  # the study tab
    response = client.post(
        page(classified),
        {
            "classifiers": ["romance_user"],
            "arms": ["legacy"],
            "max_judge_calls": "40",
            "concurrency": "4",
            "sample": "10",
            "seed": "3",
            "text": "anonymized",
        },
    )
    assert response.status_code == 302
    run = ClassificationRun.objects.get()
    # the gate's parent is run with the child it opens
    assert run.params["classifiers"] == ["affection_user", "romance_user"]
    assert run.params["arms"] == ["legacy"] and run.params["max_judge_calls"] == 40
    assert run.params["sample"] == 10 and run.params["seed"] == 3
    listed = client.get(page(classified)).content.decode()
    assert f'data-run="{run.pk}"' in listed and "0 judge calls, 0 tokens" in listed


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("max_judge_calls", "lots", "max_judge_calls: must be a whole number"),
        ("concurrency", "64", "concurrency: must be between 1 and 32"),
        ("date_from", "yesterday", "date_from: must be a date as YYYY-MM-DD"),
    ],
)
def test_bad_form_input_names_the_field_and_starts_nothing(
    classified, owner, client, field, value, message
):
    client.force_login(owner)
    response = client.post(page(classified), {"max_judge_calls": "5", field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ClassificationRun.objects.exists()


def test_the_page_is_hidden_from_other_studies_and_roles_without_analysis(
    classified, other_study, member_of, client
):
    client.force_login(member_of(other_study, "owner", username="stranger"))
    assert client.get(page(classified)).status_code == 404
    assert client.post(page(classified), {"max_judge_calls": "5"}).status_code == 404
    client.force_login(member_of(classified, "monitor"))
    assert client.get(page(classified)).status_code == 403
    assert not ClassificationRun.objects.exists()


def test_a_study_without_classifiers_says_how_to_add_them(study, owner, client):
    client.force_login(owner)
    html = client.get(page(study)).content.decode()
    assert "The protocol lists no classifiers" in html


def test_the_page_speaks_brazilian_portuguese(classified, owner, client):
    client.force_login(owner)
    html = client.get(page(classified), HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "Classificadores de conversas" in html
    assert "Iniciar uma execução de classificação" in html
