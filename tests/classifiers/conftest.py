"""Classifier fixtures: a launched study whose protocol runs classifiers judged by the loopback
fake upstream (the chat tests' fixture, so when the fake upstream moves, one place changes), and
helpers that write conversations through the real chat services."""

from __future__ import annotations

import copy

import pytest
from django.utils import timezone

from tests.chat.conftest import loopback_endpoint, upstream  # noqa: F401 - shared fixtures
from tests.conftest import ALL_CONSENT
from tests.factories import launch_study

JUDGE_MODEL = "gpt-test-current"
CONSENTING = {**ALL_CONSENT, "classify_chats": True}
REFUSING = {**ALL_CONSENT, "classify_chats": False}


def classifier_doc(rct_doc: dict, *, endpoint: str, run: list | None = None, **section) -> dict:
    """The example RCT with a `classifiers` section and its consent checkbox in every
    language's consent form."""
    doc = copy.deepcopy(rct_doc)
    for document in doc["consent"]["documents"]:
        document["checkboxes"].append(
            {
                "key": "classify_chats",
                "label": "My chats may be labelled by an AI model for the research team.",
                "required": False,
            }
        )
    doc["classifiers"] = {
        "send_to_judge": True,
        "consent_checkbox": "classify_chats",
        "text": "raw",
        "judge": {"endpoint": endpoint, "model": JUDGE_MODEL},
        "run": run if run is not None else ["loneliness@1"],
        **section,
    }
    return doc


@pytest.fixture
def make_classified_study(loopback_endpoint, owner, rct_doc, settings):  # noqa: F811
    """A launched study (arms and judge on the loopback endpoint) with the given classifiers."""
    # Retries in tests need not wait.
    settings.CLASSIFIER_JUDGE_BACKOFF_SECONDS = 0
    from studyplatform.studies.services import study_create_from_protocol

    counter = {"n": 0}

    def make(run: list | None = None, *, slug: str | None = None, **section):
        counter["n"] += 1
        doc = classifier_doc(rct_doc, endpoint=loopback_endpoint, run=run, **section)
        doc["study"]["slug"] = slug or f"cls-study-{counter['n']}"
        for arm in doc["arms"]:
            arm["model"] = {"endpoint": loopback_endpoint, "name": f"gpt-test-{arm['key']}"}
        study = study_create_from_protocol(doc=doc, author=owner)
        return launch_study(study, owner)

    return make


@pytest.fixture
def classified_study(make_classified_study):
    return make_classified_study()


@pytest.fixture
def chat():
    """chat(participant, [user text, reply text, user text, ...]) -> the stored messages, as the
    chat services store them (a participant's message, then the model's finished reply)."""
    from studyplatform.chat.models import Message
    from studyplatform.chat.services import conversation_create, message_send, reply_finish

    def write(participant, turns: list[str], conversation=None):
        conversation = conversation or conversation_create(participant=participant)
        stored = []
        user_message = None
        for i, text in enumerate(turns):
            if i % 2 == 0:
                user_message = message_send(
                    participant=participant, conversation=conversation, text=text
                ).message
                stored.append(user_message)
            else:
                reply = reply_finish(
                    reply=None,
                    user_message=user_message,
                    arm=participant.allocation.arm,
                    text=text,
                    end=None,
                    status=Message.Status.COMPLETE,
                    upstream_sent_at=timezone.now(),
                )
                stored.append(reply)
        return stored

    return write
