"""Revocation of built exports when a participant in them withdraws with deletion: which key
the replacement gets, and what the withdrawal's audit event records. (The download, the file and
the race with a running build are in tests/security/test_export_disclosure.py.)"""

from __future__ import annotations

import pytest

from studyplatform.core.models import AuditEvent
from studyplatform.exports.models import DatasetExport, DatasetExportMember
from studyplatform.exports.services import export_build, export_create, export_expire_due
from studyplatform.participants.services import participant_withdraw

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(recruiting_study, enroll, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return [enroll(recruiting_study) for _ in range(3)]


def built(study, owner, **options) -> DatasetExport:
    options.setdefault("tables", ["participants"])
    export = export_build(
        export=export_create(study=study, user=owner, options=options, enqueue=False)
    )
    assert export.status == DatasetExport.Status.DONE, export.error
    return export


def test_a_replacement_gets_a_fresh_key_unless_the_original_deliberately_reused_one(
    recruiting_study, owner, people
):
    # given: one export with its own key, and one that reused another export's key
    first = built(recruiting_study, owner)
    reusing = built(recruiting_study, owner, reuse_key_of=first.pk)
    # when: a participant in both withdraws with deletion
    participant_withdraw(participant=people[0], mode="delete", by="participant")
    # then: both are revoked; only the deliberate reuse carries over to its replacement
    first.refresh_from_db()
    reusing.refresh_from_db()
    assert first.status == reusing.status == DatasetExport.Status.REVOKED
    assert first.replaced_by.key_fingerprint != first.key_fingerprint
    assert reusing.replaced_by.key_fingerprint == first.key_fingerprint
    assert reusing.replaced_by.options == reusing.options
    assert reusing.replaced_by.created_by == owner
    # and nobody's membership of a revoked export is kept
    assert not DatasetExportMember.objects.filter(export__in=[first, reusing]).exists()


def test_the_withdrawal_audit_event_counts_the_revoked_exports(recruiting_study, owner, people):
    built(recruiting_study, owner)
    participant_withdraw(participant=people[1], mode="delete", by="participant")
    event = AuditEvent.objects.get(action="participant.withdraw")
    assert event.data["deleted"]["exports_revoked"] == 1


def test_withdrawal_keeping_the_data_revokes_nothing(recruiting_study, owner, people):
    export = built(recruiting_study, owner)
    participant_withdraw(participant=people[2], mode="keep", by="participant")
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.DONE


def test_an_expired_export_forgets_who_was_in_it(recruiting_study, owner, people):
    from django.utils import timezone

    export = built(recruiting_study, owner)
    assert DatasetExportMember.objects.filter(export=export).count() == 3
    DatasetExport.objects.filter(pk=export.pk).update(expires_at=timezone.now())
    assert export_expire_due() == 1
    assert not DatasetExportMember.objects.filter(export=export).exists()


@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_committing_while_a_build_finishes_keeps_them_out(
    recruiting_study, owner, people, monkeypatch
):
    # given: a build that has read its participants, and a withdrawal with deletion that
    # commits (holding its locks for a moment) while that build is finishing
    import threading
    import time
    from pathlib import Path

    from django.db import connection, transaction

    from studyplatform.exports.services import builder, export_path

    if connection.vendor != "postgresql":
        pytest.skip("row locks under real concurrency are a PostgreSQL property")
    built_event, locked = threading.Event(), threading.Event()
    errors: list[Exception] = []
    original = builder.Builder.run

    def run_and_wait(self):
        result = original(self)
        built_event.set()
        assert locked.wait(10)
        return result

    def withdraw() -> None:
        try:
            assert built_event.wait(10)
            with transaction.atomic():
                participant_withdraw(participant=people[0], mode="delete", by="participant")
                locked.set()
                time.sleep(0.5)  # the build tries to finish now, and must wait for this commit
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
            locked.set()
        finally:
            connection.close()

    monkeypatch.setattr(builder.Builder, "run", run_and_wait)
    export = export_create(
        study=recruiting_study, user=owner, options={"tables": ["participants"]}, enqueue=False
    )
    thread = threading.Thread(target=withdraw)
    thread.start()
    # when
    export = export_build(export=export)
    thread.join()
    # then: the finished build saw the withdrawal and kept nothing
    assert errors == []
    assert export.status == DatasetExport.Status.REVOKED, export.status
    assert not list(Path(export_path(export)).parent.glob("*.zip"))
