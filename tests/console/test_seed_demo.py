"""seed_demo launches the demo study through the launch checklist like any other study."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from studyplatform.core.models import AuditEvent
from studyplatform.studies.models import Study

pytestmark = pytest.mark.django_db


def test_the_demo_on_simulated_models_is_tested_then_launched(settings):
    # given: no `openai` endpoint registered (the demo's arms are simulated)
    settings.MODEL_ENDPOINTS = {}
    out = io.StringIO()
    # when
    call_command("seed_demo", stdout=out, stderr=io.StringIO())
    # then: each arm's model answered a recorded test, and the demo is recruiting
    study = Study.objects.get(slug="demo")
    assert study.status == "recruiting"
    checks = AuditEvent.objects.filter(action="launch.model_check", study_slug="demo")
    assert {e.data["arm"]: e.data["ok"] for e in checks} == {"legacy": True, "current": True}
    assert "created demo study 'demo' (recruiting)" in out.getvalue()


def test_a_demo_whose_endpoint_does_not_answer_stays_in_piloting_and_says_why(
    settings, register_endpoint
):
    # given: the `openai` endpoint registered where nobody listens (the discard port on loopback)
    register_endpoint("openai", base_url="http://127.0.0.1:9/v1", models=[settings.DEMO_MODEL])
    out, err = io.StringIO(), io.StringIO()
    # when
    call_command("seed_demo", stdout=out, stderr=err)
    # then
    assert Study.objects.get(slug="demo").status == "piloting"
    assert "launch check failed: Test message to arm legacy's model" in err.getvalue()
    assert "created demo study 'demo' (piloting)" in out.getvalue()


def test_the_demo_runs_the_shipped_classifiers_with_the_simulated_judge(settings):
    # given / when
    settings.MODEL_ENDPOINTS = {}
    call_command("seed_demo", stdout=io.StringIO(), stderr=io.StringIO())
    # then: every shipped classifier, judged by the simulated endpoint, with consent asked for
    from studyplatform.classifiers.library import shipped_refs
    from studyplatform.classifiers.services import study_classifiers

    study = Study.objects.get(slug="demo")
    section = study_classifiers(study)
    assert [d.ref for d in section.definitions] == shipped_refs()
    assert {d.judge.endpoint for d in section.definitions} == {"simulated"}
    assert section.send_to_judge and section.consent_checkbox == "classify_chats"
    documents = study.current_version.content["consent"]["documents"]
    assert all(any(box["key"] == "classify_chats" for box in d["checkboxes"]) for d in documents)


def test_a_classification_run_on_the_demo_labels_consenting_chats_without_a_model_key(
    settings, enroll
):
    # given: the demo, and a participant who allowed classification and sent two messages
    from studyplatform.chat.services import conversation_create, message_send
    from studyplatform.classifiers.models import ClassificationRun, ClassifierLabel
    from studyplatform.classifiers.services import classification_run_create
    from studyplatform.classifiers.tasks import classification_run_task
    from tests.conftest import ALL_CONSENT

    settings.MODEL_ENDPOINTS = {}
    call_command("seed_demo", stdout=io.StringIO(), stderr=io.StringIO())
    study = Study.objects.get(slug="demo")
    person = enroll(study, choices={**ALL_CONSENT, "classify_chats": True})
    conversation = conversation_create(participant=person)
    for text in ("I feel lonely these days", "Thanks, you are sweet"):
        message_send(participant=person, conversation=conversation, text=text)
    # when: a run of the user-message classifiers, as the console starts it
    run = classification_run_create(
        study=study,
        created_by=None,
        data={"classifiers": ["loneliness", "support_seeking"], "max_judge_calls": 100},
        enqueue=False,
    )
    classification_run_task(run.pk)
    # then: the simulated judge labelled both messages for both classifiers, for free
    run.refresh_from_db()
    assert run.status == ClassificationRun.Status.DONE
    labels = ClassifierLabel.objects.filter(study=study, outcome="label")
    assert labels.count() == 4
    assert set(labels.values_list("label", flat=True)) <= {"yes", "no"}
