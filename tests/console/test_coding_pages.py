"""The console's coding pages: drawing a sample from the Classifiers page, coding one unit at
a time with the classifier's answer hidden, the agreement table, and who may see them."""

from __future__ import annotations

import re

import pytest

from studyplatform.classifiers.models import ClassifierLabel, CodingSample, HumanLabel
from tests.classifiers.conftest import (  # noqa: F401 - shared fixtures
    chat,
    loopback_endpoint,
    make_classified_study,
    upstream,
)
from tests.classifiers.test_coding import labelled_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(make_classified_study):  # noqa: F811
    return make_classified_study()


@pytest.fixture
def labelled(study, enroll, owner, request):
    """labelled(answers): the study's loneliness labels after a run, one per answer."""
    write = request.getfixturevalue("chat")
    return lambda answers: labelled_study(study, enroll, write, owner, answers=answers)


def test_a_researcher_draws_a_sample_codes_it_and_sees_agreement(study, labelled, owner, client):
    # given: four labelled messages (yes, no, no, yes)
    labelled(["yes", "no", "no", "yes"])
    client.force_login(owner)
    # when: a sample of all four is drawn from the Classifiers page
    response = client.post(
        f"/console/{study.slug}/classifiers/coding/",
        {"classifier": "loneliness", "size": "4", "seed": "5"},
    )
    sample = CodingSample.objects.get()
    coding_url = f"/console/{study.slug}/classifiers/coding/{sample.pk}/"
    assert response.status_code == 302 and response["Location"] == coding_url
    # then: each unit is shown without the classifier's answer, and coded in turn
    machine = {i.pk: i.classifier_label.label for i in sample.items.all()}
    for expected_position in (1, 2, 3, 4):
        html = client.get(coding_url).content.decode()
        assert f'data-item="{expected_position}"' in html
        item = sample.items.get(position=expected_position)
        # the classifier's label appears nowhere but as one of the answer choices
        assert "judge answered" not in html
        item_id = re.search(r'name="item" value="(\d+)"', html).group(1)
        assert int(item_id) == item.pk
        assert (
            client.post(coding_url, {"item": item_id, "label": machine[item.pk]}).status_code == 302
        )
    done = client.get(coding_url).content.decode()
    assert "data-done" in done and "You have coded 4 of 4 units." in done
    agreement = client.get(coding_url + "agreement/").content.decode()
    assert "classifier vs " + owner.username in agreement
    assert "100%" in agreement and "1.00" in agreement
    listed = client.get(f"/console/{study.slug}/classifiers/").content.decode()
    assert f'data-sample="{sample.pk}"' in listed


def test_the_coding_page_shows_the_text_the_judge_read_and_not_its_answer(
    study, labelled, owner, client
):
    labelled(["yes"])
    sample = CodingSample.objects.create(
        study=study,
        classifier_key="loneliness",
        classifier_version=1,
        judge_endpoint="x",
        judge_model="y",
        definition={
            "scope": "user_message",
            "levels": [
                {"code": "yes", "label": {"en": "Yes"}},
                {"code": "no", "label": {"en": "No"}},
            ],
            "question": {"en": "Lonely?"},
            "title": {"en": "Loneliness"},
            "output_type": "binary",
        },
        size=1,
        seed=1,
    )
    sample.items.create(position=1, classifier_label=ClassifierLabel.objects.get())
    client.force_login(owner)
    html = client.get(f"/console/{study.slug}/classifiers/coding/{sample.pk}/").content.decode()
    assert "message 0 from Ana Souza" in html and "Lonely?" in html
    # the raw run's reply to this message is not part of a user-message unit
    assert "reply 0" not in html
    assert "checked" not in html


def test_a_bad_label_is_refused_with_the_field_named(study, labelled, owner, client):
    labelled(["yes"])
    client.force_login(owner)
    client.post(f"/console/{study.slug}/classifiers/coding/", {"classifier": "loneliness"})
    sample = CodingSample.objects.get()
    item = sample.items.get()
    response = client.post(
        f"/console/{study.slug}/classifiers/coding/{sample.pk}/",
        {"item": item.pk, "label": "perhaps"},
    )
    assert response.status_code == 400
    assert "label: must be one of: yes, no" in response.content.decode()
    assert not HumanLabel.objects.exists()


def test_a_bad_sample_request_names_the_field(study, labelled, owner, client):
    labelled(["yes"])
    client.force_login(owner)
    response = client.post(
        f"/console/{study.slug}/classifiers/coding/",
        {"classifier": "loneliness", "size": "0"},
        follow=True,
    )
    assert "size: must be between 1 and 1000" in response.content.decode()
    assert not CodingSample.objects.exists()


def test_the_coding_pages_are_hidden_from_other_studies_and_roles_without_analysis(
    study,
    make_classified_study,  # noqa: F811
    labelled,
    owner,
    member_of,
    client,
):
    labelled(["yes"])
    client.force_login(owner)
    client.post(f"/console/{study.slug}/classifiers/coding/", {"classifier": "loneliness"})
    sample = CodingSample.objects.get()
    item = sample.items.get()
    base = f"/console/{study.slug}/classifiers/coding/"
    other = make_classified_study(slug="another")
    client.force_login(member_of(other, "owner", username="stranger"))
    assert client.get(f"{base}{sample.pk}/").status_code == 404
    assert client.get(f"{base}{sample.pk}/agreement/").status_code == 404
    assert client.post(f"{base}{sample.pk}/", {"item": item.pk, "label": "yes"}).status_code == 404
    assert client.post(base, {"classifier": "loneliness"}).status_code == 404
    client.force_login(member_of(study, "monitor", username="mo"))
    assert client.get(f"{base}{sample.pk}/").status_code == 403
    assert client.post(f"{base}{sample.pk}/", {"item": item.pk, "label": "yes"}).status_code == 403
    assert not HumanLabel.objects.exists() and CodingSample.objects.count() == 1
