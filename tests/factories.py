"""factory_boy factories for rows that tests do not build through services."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"researcher{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")


def launch_study(study, actor):
    """Move a draft or piloting study to recruiting through the real service, with the launch
    checklist met the way a researcher meets it: each active arm's model test recorded (as the
    console's "Test models" records it) and the key variables the arms name set while
    launching (as an operator sets them)."""
    import os
    from unittest import mock

    from studyplatform.core.model_endpoints import endpoint_get
    from studyplatform.studies.launch import model_check_record
    from studyplatform.studies.services import study_transition

    if study.status == "draft":
        study = study_transition(study=study, to="piloting", actor=actor)
    keys = {}
    for arm in study.arms.filter(is_active=True):
        model_check_record(study=study, arm=arm, ok=True, error="", actor=actor)
        endpoint = endpoint_get(arm.endpoint)
        key_env = endpoint.api_key_env if endpoint and endpoint.requires_api_key else ""
        if key_env and not os.environ.get(key_env):
            keys[key_env] = "test-key"
    with mock.patch.dict(os.environ, keys):
        return study_transition(study=study, to="recruiting", actor=actor)
