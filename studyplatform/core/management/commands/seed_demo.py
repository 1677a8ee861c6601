"""Seed the demo study and a demo researcher login (idempotent).

The demo study is the randomized example protocol, recruiting, with every arm on the simulated
provider unless an OpenAI-compatible endpoint is configured (OPENAI_API_KEY or OPENAI_BASE_URL).
"""

from __future__ import annotations

import copy
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from studyplatform.accounts.models import EmailVerification
from studyplatform.accounts.services import email_mark_verified
from studyplatform.studies.models import Study
from studyplatform.studies.protocol import parse_protocol_text
from studyplatform.studies.services import study_create_from_protocol, study_transition

DEMO_SLUG = "demo"
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
        verified = EmailVerification.objects.filter(user=user, email__iexact=user.email)
        if user.email and not verified.exists():
            # Recorded explicitly (not only through the superuser rule), so the demo login stays
            # usable if an admin makes it an ordinary account.
            email_mark_verified(user=user, method=EmailVerification.Method.COMMAND, actor=None)
        if not Study.objects.filter(slug=DEMO_SLUG).exists():
            study = study_create_from_protocol(
                doc=demo_protocol(), author=user, change_note="Demo study"
            )
            for status in (Study.Status.PILOTING, Study.Status.RECRUITING):
                study = study_transition(study=study, to=status, actor=user)
            self.stdout.write(f"created demo study {DEMO_SLUG!r} ({study.status})")
