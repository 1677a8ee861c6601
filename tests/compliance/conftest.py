"""A launched study with a usage requirement, and a way to chat at a given instant."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from studyplatform.chat.models import Message
from studyplatform.chat.services import conversation_create, message_send
from studyplatform.studies.services import study_create_from_protocol
from tests.factories import launch_study

SP = ZoneInfo("America/Sao_Paulo")
# Monday 2026-03-02 10:00 in São Paulo (UTC-3, no DST since 2019): study day 0 of the fixtures.
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=SP).astimezone(dt.UTC)

REQUIREMENTS = {
    "daily": {"active_minutes": 5},
    "nudge": {"local_time": "19:00", "channels": ["in_app", "email"]},
    "completion": {"min_days": 3, "of_days": 4},
}


def local(day: int, hour: int, minute: int = 0, tz=SP) -> dt.datetime:
    """An instant at local wall-clock time on study day ``day`` (day 0 = 2026-03-02)."""
    return dt.datetime(2026, 3, 2 + day, hour, minute, tzinfo=tz).astimezone(dt.UTC)


def requirement_doc(rct_doc: dict, requirements: dict | None = None) -> dict:
    doc = copy.deepcopy(rct_doc)
    doc["requirements"] = copy.deepcopy(requirements or REQUIREMENTS)
    return doc


@pytest.fixture
def req_study(owner, rct_doc):
    study = study_create_from_protocol(doc=requirement_doc(rct_doc), author=owner)
    return launch_study(study, owner)


@pytest.fixture
def weekly_study(owner, rct_doc):
    doc = requirement_doc(
        rct_doc,
        {
            "weekly": {"active_minutes": 30, "messages": 4},
            "nudge": {"local_time": "09:00", "channels": ["in_app"]},
            "completion": {"min_weeks": 3, "of_weeks": 4},
        },
    )
    study = study_create_from_protocol(doc=doc, author=owner)
    return launch_study(study, owner)


_ids = itertools.count()


@pytest.fixture
def chat():
    """``chat(participant, start, minutes)``: a session of user messages from ``start`` to
    ``start + minutes`` (one a minute, at least two) with an assistant reply after each, stored
    through the real send service."""

    def do(participant, start: dt.datetime, minutes: float) -> None:
        conversation = conversation_create(participant=participant, now=start)
        steps = max(1, int(minutes))
        for i in range(steps + 1):
            at = start + dt.timedelta(minutes=minutes * i / steps)
            sent = message_send(
                participant=participant,
                conversation=conversation,
                text=f"hello {i}",
                client_request_id=f"req-{next(_ids)}",
                now=at,
            )
            Message.objects.create(
                conversation=conversation,
                participant=participant,
                parent=sent.message,
                role=Message.Role.ASSISTANT,
                content="hi",
                created_at=at + dt.timedelta(seconds=2),
                arm=conversation.arm,
            )

    return do
