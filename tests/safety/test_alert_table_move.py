"""SafetyAlert moved from the chat app to the safety app without touching the database: an
alert written while chat owned the model is read, unchanged, through the safety app after the
move's migrations run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from studyplatform.safety.models import SafetyAlert

# Migrating needs the schema editor, which SQLite refuses inside the test's transaction.
pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_MOVE = [("chat", "0001_initial"), ("safety", None)]


def _latest(executor: MigrationExecutor) -> list[tuple[str, str]]:
    # Every app's leaf, not only chat's and safety's: going back to chat 0001 also unapplies the
    # migrations of other apps that depend on later chat migrations (surveys' task log).
    return list(executor.loader.graph.leaf_nodes())


def test_an_alert_written_before_the_move_is_read_by_the_safety_app_after_it(
    recruiting_study, enroll
):
    participant = enroll(recruiting_study)
    executor = MigrationExecutor(connection)
    latest = _latest(executor)
    try:
        # given: the database as it was before the move, and an alert written by chat's model
        executor.migrate(BEFORE_MOVE)
        old_state = executor.loader.project_state(BEFORE_MOVE[:1])
        assert ("safety", "safetyalert") not in old_state.models
        ChatSafetyAlert = old_state.apps.get_model("chat", "SafetyAlert")
        created = timezone.now().replace(microsecond=0)
        old = ChatSafetyAlert.objects.create(
            study_id=recruiting_study.pk,
            participant_id=participant.pk,
            source="survey",
            severity="high",
            category="self_harm",
            excerpt="phq9: safety:self_harm",
            detector="survey:phq9",
            created_at=created,
            due_at=created + dt.timedelta(hours=24),
        )
        # when: the move's migrations run
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)
    # then: the same row, decrypted excerpt included, through the safety app's model
    alert = SafetyAlert.objects.get(pk=old.pk)
    assert SafetyAlert._meta.db_table == "chat_safetyalert"
    assert (alert.participant_id, alert.source, alert.severity, alert.excerpt) == (
        participant.pk,
        "survey",
        "high",
        "phq9: safety:self_harm",
    )
    assert alert.created_at == created and alert.status == SafetyAlert.Status.OPEN
