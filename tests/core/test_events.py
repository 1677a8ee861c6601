"""The core event registry: every event reaches the apps the platform needs, with real data,
and publishing keeps the transaction semantics the services promise."""

from __future__ import annotations

import pytest
from django.utils import timezone

from studyplatform.chat.models import Conversation, Message
from studyplatform.chat.services import conversation_create, message_send
from studyplatform.core import events
from studyplatform.core.events import (
    MessageStored,
    ParticipantChatRequested,
    ParticipantContentDeletion,
    ParticipantDownloadFilesRequested,
    ParticipantDownloadRequested,
    ParticipantEnrolled,
    ParticipantHomeRequested,
    ParticipantTimezoneChanged,
    ParticipantWithdrew,
    ProtocolChanged,
)
from studyplatform.core.models import AuditEvent
from studyplatform.exports.models import DatasetExport
from studyplatform.exports.services import export_build, export_create
from studyplatform.participants.models import Participant
from studyplatform.participants.services import participant_withdraw
from studyplatform.studies.services import protocol_version_create
from surveys.engine import schedule_tick
from surveys.models import Invitation, Response
from surveys.services import response_save

pytestmark = pytest.mark.django_db


def names(event_type: type) -> list[str]:
    return [f"{h.__module__}.{h.__qualname__}" for h in events.subscribers(event_type)]


def test_every_event_type_has_the_subscribers_the_platform_needs():
    # The order is INSTALLED_APPS order (chat, exports, surveys), as with the old hook lists.
    assert names(ParticipantEnrolled) == [
        "surveys.hooks.schedule_new_participant",
        "studyplatform.compliance.hooks.plan_nudges",
    ]
    assert names(ParticipantTimezoneChanged) == [
        "surveys.hooks.reschedule_in_new_zone",
        "studyplatform.compliance.hooks.replan_nudges",
    ]
    assert names(ParticipantWithdrew) == [
        "surveys.hooks.stop_invitations",
        "studyplatform.compliance.hooks.cancel_nudges",
    ]
    assert names(ParticipantContentDeletion) == [
        "studyplatform.chat.participant_data.chat_delete",
        "studyplatform.exports.participant_data.exports_delete",
        "surveys.hooks.delete_responses",
        "surveys.hooks.delete_task_log",
        "studyplatform.compliance.hooks.delete_compliance",
    ]
    assert names(ParticipantDownloadRequested) == [
        "studyplatform.chat.participant_data.chat_download",
        "surveys.hooks.survey_download",
        "surveys.hooks.task_download",
        "studyplatform.compliance.hooks.compliance_download",
    ]
    assert names(ParticipantDownloadFilesRequested) == [
        "studyplatform.chat.participant_data.chat_download_files",
    ]
    assert names(ParticipantHomeRequested) == [
        "surveys.hooks.home_due",
        "surveys.hooks.home_task",
        "studyplatform.compliance.hooks.home_requirements",
    ]
    assert names(ParticipantChatRequested) == ["surveys.hooks.chat_task"]
    assert names(MessageStored) == [
        "surveys.hooks.after_message",
        "surveys.hooks.task_after_message",
        "studyplatform.compliance.hooks.refresh_after_message",
    ]
    assert names(ProtocolChanged) == [
        "surveys.hooks.reschedule",
        "studyplatform.compliance.hooks.resync_nudges",
    ]
    assert set(events.EVENT_TYPES) == {
        ParticipantEnrolled,
        ParticipantTimezoneChanged,
        ParticipantWithdrew,
        ParticipantContentDeletion,
        ParticipantDownloadRequested,
        ParticipantDownloadFilesRequested,
        ParticipantHomeRequested,
        MessageStored,
        ProtocolChanged,
        ParticipantChatRequested,
    }


def test_withdrawal_with_deletion_reaches_the_chat_survey_and_export_deleters(
    recruiting_study, enroll, owner, settings, tmp_path, django_capture_on_commit_callbacks
):
    # given: a participant with a chat message, a submitted survey and a built export
    settings.MEDIA_ROOT = tmp_path / "media"
    participant = enroll(recruiting_study)
    with django_capture_on_commit_callbacks(execute=True):
        schedule_tick(now=timezone.now())
    baseline = Invitation.objects.get(participant=participant, entry_key="baseline")
    response_save(
        invitation=baseline,
        instrument_key="who5",
        answers={f"who5_{i}": 3 for i in range(1, 6)},
        submit=True,
    )
    with django_capture_on_commit_callbacks(execute=True):
        message_send(
            participant=participant,
            conversation=conversation_create(participant=participant),
            text="How do I sleep after night shifts?",
        )
    export = export_build(
        export=export_create(
            study=recruiting_study,
            user=owner,
            options={"tables": ["participants"]},
            enqueue=False,
        )
    )
    assert export.status == DatasetExport.Status.DONE, export.error
    assert Message.objects.filter(participant=participant).exists()
    assert Response.objects.filter(participant=participant).exists()
    # when
    participant_withdraw(participant=participant, mode="delete", by="participant")
    # then: each app's content is gone, and each deleter's count is in the audit event
    assert not Message.objects.filter(participant=participant).exists()
    assert not Conversation.objects.filter(participant=participant).exists()
    assert not Response.objects.filter(participant=participant).exists()
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.REVOKED
    deleted = AuditEvent.objects.get(action="participant.withdraw").data["deleted"]
    assert deleted["messages"] == 1 and deleted["conversations"] == 1
    assert deleted["survey_responses"] == 1 and deleted["exports_revoked"] == 1
    # and every withdrawal reached the survey engine: no invitation is left to send
    assert not Invitation.objects.filter(
        participant=participant, status__in=["scheduled", "sent"]
    ).exists()


def test_a_failing_enrollment_subscriber_rolls_the_enrollment_back(
    recruiting_study, enroll, monkeypatch
):
    # given: a subscriber that fails (published inside the enrollment transaction)
    def fail(event: ParticipantEnrolled) -> None:
        raise RuntimeError("subscriber failed")

    monkeypatch.setitem(
        events._subscribers, ParticipantEnrolled, [*events.subscribers(ParticipantEnrolled), fail]
    )
    # when
    with pytest.raises(RuntimeError, match="subscriber failed"):
        enroll(recruiting_study)
    # then: nothing of the enrollment remains, the survey schedule included
    assert not Participant.objects.exists()
    assert not Invitation.objects.exists()


def test_protocol_changed_is_published_only_after_the_version_commits(
    recruiting_study, owner, rct_doc, monkeypatch, django_capture_on_commit_callbacks
):
    seen: list[ProtocolChanged] = []
    monkeypatch.setitem(events._subscribers, ProtocolChanged, [seen.append])
    rct_doc["surveys"]["schedule"][1]["rule"]["every_days"] = 14
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        version, _ = protocol_version_create(
            study=recruiting_study, doc=rct_doc, author=owner, change_note="Fortnightly"
        )
    assert seen == []  # not before the commit
    for callback in callbacks:
        callback()
    assert seen == [ProtocolChanged(study=recruiting_study, version=version)]


def test_only_declared_event_types_can_be_published_or_subscribed():
    class Undeclared:
        pass

    with pytest.raises(TypeError, match="not an event type"):
        events.publish(Undeclared())
    with pytest.raises(TypeError, match="not an event type"):
        events.subscribe(Undeclared, print)


def test_subscribing_a_handler_twice_calls_it_once(monkeypatch):
    calls: list[object] = []
    monkeypatch.setitem(events._subscribers, MessageStored, [])
    events.subscribe(MessageStored, calls.append)
    events.subscribe(MessageStored, calls.append)
    events.publish(MessageStored(participant=None))
    assert calls == [MessageStored(participant=None)]
