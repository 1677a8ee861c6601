"""The chat send's one-statement read (chat/send_load.py) gives the same objects as the ORM's
select_related, for the participant's own conversation only."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from studyplatform.chat import services
from studyplatform.chat.models import Conversation
from studyplatform.chat.send_load import conversation_for_send
from tests.chat import test_chat_stream

pytestmark = pytest.mark.django_db

participant = test_chat_stream.participant  # an enrolled participant of the chat study
conversation = test_chat_stream.conversation


def same_fields(ours, orm) -> None:
    assert type(ours) is type(orm)
    for field in type(orm)._meta.concrete_fields:
        assert getattr(ours, field.attname) == getattr(orm, field.attname), field.name


def test_it_loads_what_select_related_loads_in_one_query(participant, conversation):
    services.message_send(participant=participant, conversation=conversation, text="hi")
    orm = Conversation.objects.select_related("arm", "participant__study__current_version").get(
        pk=conversation.pk
    )
    # when
    with CaptureQueriesContext(connection) as queries:
        ours = conversation_for_send(conversation.pk, participant.pk)
        # then: the related objects come with it, converted as the ORM converts them
        # (datetimes aware, the protocol's JSON a dict, encrypted fields decrypted)
        same_fields(ours, orm)
        same_fields(ours.arm, orm.arm)
        same_fields(ours.participant, orm.participant)
        same_fields(ours.participant.study, orm.participant.study)
        same_fields(ours.participant.study.current_version, orm.participant.study.current_version)
    assert len(queries.captured_queries) == 1
    assert isinstance(ours.participant.study.protocol, dict)
    assert ours.created_at.tzinfo is not None
    assert ours.participant.study.current_version.content == orm.participant.study.protocol
    assert not ours._state.adding and ours._state.db == "default"


def test_another_participants_conversation_is_none(participant, conversation, chat_study, enroll):
    other = enroll(chat_study)
    assert conversation_for_send(conversation.pk, other.pk) is None
    assert conversation_for_send(conversation.pk + 1000, participant.pk) is None


def test_a_study_without_a_current_version_loads_none_for_it(participant, conversation):
    study = participant.study
    type(study).objects.filter(pk=study.pk).update(current_version=None)
    loaded = conversation_for_send(conversation.pk, participant.pk)
    assert loaded.participant.study.current_version is None
    assert loaded.participant.study.protocol == {}
