"""seed_demo launches the demo study through the launch checklist like any other study."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from studyplatform.core.models import AuditEvent
from studyplatform.studies.models import Study

pytestmark = pytest.mark.django_db


def test_the_demo_on_simulated_models_is_tested_then_launched(settings):
    # given: no model endpoint configured (the demo's arms are simulated)
    settings.OPENAI_BASE_URL = settings.OPENAI_API_KEY = ""
    out = io.StringIO()
    # when
    call_command("seed_demo", stdout=out, stderr=io.StringIO())
    # then: each arm's model answered a recorded test, and the demo is recruiting
    study = Study.objects.get(slug="demo")
    assert study.status == "recruiting"
    checks = AuditEvent.objects.filter(action="launch.model_check", study_slug="demo")
    assert {e.data["arm"]: e.data["ok"] for e in checks} == {"legacy": True, "current": True}
    assert "created demo study 'demo' (recruiting)" in out.getvalue()


def test_a_demo_whose_endpoint_does_not_answer_stays_in_piloting_and_says_why(settings):
    # given: an endpoint nobody listens on (the discard port on loopback)
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.OPENAI_API_KEY = "unused"
    out, err = io.StringIO(), io.StringIO()
    # when
    call_command("seed_demo", stdout=out, stderr=err)
    # then
    assert Study.objects.get(slug="demo").status == "piloting"
    assert "launch check failed: Test message to arm legacy's model" in err.getvalue()
    assert "created demo study 'demo' (piloting)" in out.getvalue()
