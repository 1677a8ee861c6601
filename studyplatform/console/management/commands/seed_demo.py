"""Seed the demo study and a demo researcher login (idempotent).

The demo study is the randomized example protocol, recruiting, with every arm on the `simulated`
endpoint unless the `openai` endpoint is registered (OPENAI_API_KEY or OPENAI_BASE_URL, or
MODEL_ENDPOINTS) and allows DEMO_MODEL. It is launched through the launch checklist like any
study: when the endpoint does not answer the test message, the demo stays in piloting and the
command prints the failing checks. It runs the shipped conversation classifiers with the
simulated judge (docs/classifiers.md).

It lives in the console app because seeding touches accounts, studies and chat (the model test
before launch), and the console is the one app allowed to import all three (the layer order is
in tests/core/test_import_layers.py).
"""

from __future__ import annotations

import os

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from studyplatform.accounts.models import EmailVerification
from studyplatform.accounts.services import email_mark_verified
from studyplatform.chat.model_checks import study_models_test
from studyplatform.classifiers.library import shipped_refs
from studyplatform.core.model_endpoints import endpoint_get
from studyplatform.studies.models import Study
from studyplatform.studies.services import (
    LaunchBlocked,
    study_create_from_protocol,
    study_transition,
)

DEMO_SLUG = "demo"
EXAMPLE = settings.BASE_DIR / "examples" / "companion-rct.yaml"


def demo_protocol() -> dict:
    # The example's arms name models on the `openai` endpoint, which may not be registered here;
    # the arms are replaced before the document is validated (by the service that stores it).
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    doc["study"]["slug"] = DEMO_SLUG
    doc["study"]["title"] = "Demo study: everyday conversations with an AI assistant"
    doc["study"]["recruitment"] = {"panel": "none", "collect_email": True}
    openai = endpoint_get("openai")
    use_openai = openai is not None and openai.allows(settings.DEMO_MODEL)
    for arm in doc["arms"]:
        if use_openai:
            arm["model"] = {"endpoint": "openai", "name": settings.DEMO_MODEL}
        else:
            arm["model"] = {"endpoint": "simulated", "name": f"pilot-{arm['key']}"}
        arm["model"]["context_tokens"] = 16000
    add_demo_classifiers(doc)
    return doc


# The consent checkbox the demo's classifiers need, in each consent language.
CLASSIFY_CHATS = {
    "en": "My chats may be labelled by an AI model run for the research team.",
    "pt-br": "Minhas conversas podem ser classificadas por um modelo de IA usado pela equipe "
    "de pesquisa.",
}


def add_demo_classifiers(doc: dict) -> None:
    """Every shipped classifier, judged by the `simulated` endpoint (it calls nothing and answers
    deterministically), so a fresh `make run` can start a classification run and code a sample
    without a model key. The consent rule still applies: only participants who tick the
    checkbox are labelled."""
    for document in doc["consent"]["documents"]:
        language = document["language"].lower()
        document["checkboxes"].append(
            {
                "key": "classify_chats",
                "label": CLASSIFY_CHATS.get(language, CLASSIFY_CHATS["en"]),
                "required": False,
            }
        )
    doc["classifiers"] = {
        "send_to_judge": True,
        "consent_checkbox": "classify_chats",
        "text": "anonymized",
        "judge": {"endpoint": "simulated", "model": "simulated-judge"},
        # Sorted refs put each gate's parent (affection_user) before its child (romance_user).
        "run": shipped_refs(),
    }


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
            study = study_transition(study=study, to=Study.Status.PILOTING, actor=user)
            # Launching runs the launch checklist like any other launch: the models must answer
            # a test message first. If they do not, the demo stays in piloting and says why.
            study_models_test(study=study, actor=user)
            try:
                study = study_transition(study=study, to=Study.Status.RECRUITING, actor=user)
            except LaunchBlocked as exc:
                for item in exc.failing:
                    self.stderr.write(f"launch check failed: {item.label}: {item.why}")
            self.stdout.write(f"created demo study {DEMO_SLUG!r} ({study.status})")
