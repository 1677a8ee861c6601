"""Seed the demo study and a demo researcher login (idempotent).

The demo study is the randomized example protocol, recruiting, with every arm on the simulated
provider unless an OpenAI-compatible endpoint is configured (OPENAI_API_KEY or OPENAI_BASE_URL).
It is launched through the launch checklist like any study: when a configured endpoint does not
answer the test message, the demo stays in piloting and the command prints the failing checks.
"""

from __future__ import annotations

import asyncio
import copy
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from studyplatform.chat.providers import ProviderError, get_provider
from studyplatform.chat.services import provider_config_for
from studyplatform.studies.launch import model_check_record
from studyplatform.studies.models import Study
from studyplatform.studies.protocol import parse_protocol_text
from studyplatform.studies.services import (
    LaunchBlocked,
    study_create_from_protocol,
    study_transition,
)

DEMO_SLUG = "demo"
MODEL_CHECK_TIMEOUT_S = 30
EXAMPLE = settings.BASE_DIR / "examples" / "companion-rct.yaml"


def demo_protocol() -> dict:
    doc = copy.deepcopy(parse_protocol_text(EXAMPLE.read_text(encoding="utf-8")))
    doc["study"]["slug"] = DEMO_SLUG
    doc["study"]["title"] = "Demo study: everyday conversations with an AI assistant"
    doc["study"]["recruitment"] = {"panel": "none", "collect_email": True}
    for arm in doc["arms"]:
        if settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL:
            arm["model"] = {
                "provider": "openai",
                "name": settings.DEMO_MODEL,
                "api_key_env": "OPENAI_API_KEY",
                "context_tokens": 16000,
            }
            if settings.OPENAI_BASE_URL:
                arm["model"]["base_url"] = settings.OPENAI_BASE_URL
        else:
            arm["model"] = {
                "provider": "simulated",
                "name": f"pilot-{arm['key']}",
                "context_tokens": 16000,
            }
    return doc


def _test_models(study: Study, user) -> None:
    """Send a test message to each arm's model and record the result, as "Test models" does."""
    for arm in study.arms.filter(is_active=True):
        error = ""
        try:
            provider = get_provider(arm.provider, provider_config_for(arm))

            async def check(provider=provider, model=arm.model_name) -> None:
                async with provider:
                    await asyncio.wait_for(provider.check(model), MODEL_CHECK_TIMEOUT_S)

            asyncio.run(check())
        except (ProviderError, TimeoutError, ValueError, OSError) as exc:
            error = str(exc)[:300] or type(exc).__name__
        model_check_record(study=study, arm=arm, ok=not error, error=error, actor=user)


class Command(BaseCommand):
    help = "Create the demo study and the demo researcher account if they do not exist."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("DEMO_USERNAME", "researcher"))
        parser.add_argument(
            "--password", default=os.environ.get("DEMO_PASSWORD", "demo-researcher")
        )

    @transaction.atomic
    def handle(self, *args, username, password, **opts):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"is_staff": True, "is_superuser": True, "email": f"{username}@localhost"},
        )
        if created:
            user.set_password(password)
            user.save()
            self.stdout.write(f"created researcher {username!r}")
        if not Study.objects.filter(slug=DEMO_SLUG).exists():
            study = study_create_from_protocol(
                doc=demo_protocol(), author=user, change_note="Demo study"
            )
            study = study_transition(study=study, to=Study.Status.PILOTING, actor=user)
            # Launching runs the launch checklist like any other launch: the models must answer
            # a test message first. If they do not, the demo stays in piloting and says why.
            _test_models(study, user)
            try:
                study = study_transition(study=study, to=Study.Status.RECRUITING, actor=user)
            except LaunchBlocked as exc:
                for item in exc.failing:
                    self.stderr.write(f"launch check failed: {item.label}: {item.why}")
            self.stdout.write(f"created demo study {DEMO_SLUG!r} ({study.status})")
