"""The chat app's part of a participant's "download my data": blinding of the replying model."""

from __future__ import annotations

import pytest
from django.utils import timezone

from studyplatform.chat.models import Conversation, Message
from studyplatform.chat.participant_data import chat_download
from studyplatform.core.events import ParticipantDownloadRequested

pytestmark = pytest.mark.django_db


def _conversation_with_reply(participant, *, imported: bool) -> None:
    now = timezone.now()
    conversation = Conversation.objects.create(
        participant=participant,
        arm=participant.allocation.arm,
        imported=imported,
        created_at=now,
        updated_at=now,
    )
    Message.objects.create(
        conversation=conversation,
        participant=participant,
        role="assistant",
        content="hello",
        status="complete",
        imported=imported,
        model_reported="gpt-pinned-2025-01-01",
        created_at=now,
    )


def test_a_blinded_participant_s_download_does_not_name_the_model_that_replied(
    recruiting_study, enroll
):
    # given: a study that does not disclose the arm, and a live reply from the arm's model
    assert not recruiting_study.protocol.get("allocation", {}).get("disclose_to_participant")
    participant = enroll(recruiting_study)
    _conversation_with_reply(participant, imported=False)
    # when: their data download is assembled
    rows = chat_download(ParticipantDownloadRequested(participant=participant))["messages"]
    # then: the model (which would reveal the arm) is left out
    assert [row["model_reported"] for row in rows] == [""]


def test_imported_history_keeps_its_own_model_names(recruiting_study, enroll):
    participant = enroll(recruiting_study)
    _conversation_with_reply(participant, imported=True)
    rows = chat_download(ParticipantDownloadRequested(participant=participant))["messages"]
    assert [row["model_reported"] for row in rows] == ["gpt-pinned-2025-01-01"]
