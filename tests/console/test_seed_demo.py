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
