"""Researcher survey API: who may call what, invitations with their timeline, reminding now
(audited), responses with item-level answers (audited), CSV downloads and compliance."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from studyplatform.core.models import AuditEvent
from studyplatform.studies.services import study_create_from_protocol
from surveys.engine import schedule_tick
from surveys.models import Invitation
from surveys.services import response_save

pytestmark = pytest.mark.django_db

WHO5 = {f"who5_{i}": 4 for i in range(1, 6)}


@pytest.fixture(autouse=True)
def _fresh_schedule_cache():
    # surveys.engine caches schedule entries by protocol-version id, which SQLite reuses
    # after a test's rollback.
    from surveys.engine import _entries

    _entries.cache_clear()
    yield
    _entries.cache_clear()


@pytest.fixture
def baseline(recruiting_study, enroll, django_capture_on_commit_callbacks):
    """Participants enrolled and their baseline invitations sent by a real tick."""

    def make(n: int = 1) -> list[Invitation]:
        people = [enroll(recruiting_study) for _ in range(n)]
        with django_capture_on_commit_callbacks(execute=True):
            schedule_tick(now=timezone.now())
        return [Invitation.objects.get(participant=p, entry_key="baseline") for p in people]

    return make


def url(study, tail: str) -> str:
    return f"/api/studies/{study.slug}/{tail}"


OWNER, DESIGNER, MONITOR, ANALYST, SAFETY = (
    "owner",
    "designer",
    "monitor",
    "analyst",
    "safety_reviewer",
)
EVERYONE = frozenset({OWNER, DESIGNER, MONITOR, ANALYST, SAFETY})

# Written by hand, not read from studies/roles.py, so a mistake in the role table fails here:
# (method, path, success status, roles allowed).
ENDPOINTS = [
    ("get", "invitations/", 200, EVERYONE),
    ("get", "invitations/{id}/", 200, EVERYONE),
    ("post", "invitations/{id}/remind/", 200, {OWNER, DESIGNER}),
    ("get", "responses/", 200, {OWNER, ANALYST}),
    ("get", "compliance/", 200, EVERYONE),
]


@pytest.mark.parametrize("role", sorted(EVERYONE))
def test_each_role_reaches_exactly_the_endpoints_its_permissions_allow(
    role, recruiting_study, baseline, member_of, api_as
):
    (invitation,) = baseline()
    client = api_as(member_of(recruiting_study, role))

    for method, tail, ok, allowed in ENDPOINTS:
        response = getattr(client, method)(url(recruiting_study, tail.format(id=invitation.pk)))
        expected = ok if role in allowed else 403
        assert response.status_code == expected, (role, tail, response.status_code)
    reminded = Invitation.objects.get(pk=invitation.pk).reminders_sent
    assert reminded == (1 if role in {OWNER, DESIGNER} else 0)


def test_a_member_of_another_study_gets_404_everywhere(
    recruiting_study, baseline, rct_doc, make_user, api_as
):
    (invitation,) = baseline()
    rct_doc["study"]["slug"] = "other-study"
    stranger = make_user("stranger")
    study_create_from_protocol(doc=rct_doc, author=stranger)  # owner of the other study
    client = api_as(stranger)

    for method, tail, *_ in ENDPOINTS:
        response = getattr(client, method)(url(recruiting_study, tail.format(id=invitation.pk)))
        assert response.status_code == 404, tail
    assert Invitation.objects.get(pk=invitation.pk).reminders_sent == 0


def test_the_invitation_list_filters_and_serializes_every_column(
    recruiting_study, baseline, owner, api_as
):
    first, second = baseline(2)
    client = api_as(owner)

    everyone = client.get(url(recruiting_study, "invitations/")).json()
    one = client.get(
        url(recruiting_study, f"invitations/?participant={first.participant.code}")
    ).json()
    sent_baseline = client.get(
        url(recruiting_study, "invitations/?status=sent&entry=baseline")
    ).json()

    assert {row["id"] for row in everyone} >= {first.pk, second.pk}
    assert [row["id"] for row in one] == [first.pk]
    assert {row["id"] for row in sent_baseline} == {first.pk, second.pk}
    row = one[0]
    assert row["participant"] == first.participant.code
    assert row["entry"] == "baseline" and row["instruments"] == ["who5", "ucla3", "phq9"]
    assert row["status"] == "sent" and row["sent_at"] and row["completed_at"] is None
    assert row["protocol_version"] == 1 and row["reminders_sent"] == 0
    assert client.get(url(recruiting_study, "invitations/?wave=abc")).json() == []


def test_the_invitation_list_makes_the_same_number_of_queries_for_many_rows(
    recruiting_study, baseline, owner, api_as
):
    baseline(1)
    client = api_as(owner)
    client.get(url(recruiting_study, "invitations/"))  # warm the per-user permission cache
    with CaptureQueriesContext(connection) as few:
        client.get(url(recruiting_study, "invitations/"))
    baseline(3)
    with CaptureQueriesContext(connection) as many:
        client.get(url(recruiting_study, "invitations/"))

    assert len(many) == len(few)


def test_the_detail_shows_the_completed_timeline(recruiting_study, baseline, owner, api_as):
    (invitation,) = baseline()
    for key, answers in (
        ("who5", WHO5),
        ("ucla3", {f"ucla3_{i}": 2 for i in range(1, 4)}),
        ("phq9", {f"phq9_{i}": 0 for i in range(1, 10)}),
    ):
        response_save(invitation=invitation, instrument_key=key, answers=answers, submit=True)

    body = api_as(owner).get(url(recruiting_study, f"invitations/{invitation.pk}/")).json()

    assert body["status"] == "completed"
    events = [e["event"] for e in body["timeline"]]
    assert {"scheduled", "opens", "sent", "opened", "started", "completed"} <= set(events)
    assert events[-1] == "completed"


def test_remind_now_sends_an_email_counts_it_and_is_audited(
    recruiting_study, baseline, owner, api_as, django_capture_on_commit_callbacks
):
    (invitation,) = baseline()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(owner).post(url(recruiting_study, f"invitations/{invitation.pk}/remind/"))

    assert response.status_code == 200
    assert response.json()["reminders_sent"] == 1
    invitation.refresh_from_db()
    assert invitation.reminders_sent == 1 and len(invitation.reminders_sent_at) == 1
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("Reminder:")
    event = AuditEvent.objects.get(action="survey.remind")
    assert event.actor == owner and event.target_id == str(invitation.pk)
    assert event.study_slug == recruiting_study.slug
    assert event.data == {"participant": invitation.participant.code, "reminder": 1}
    assert "reminder" in [name for name, _ in invitation.timeline()]


def test_remind_now_refuses_a_closed_invitation_and_writes_nothing(
    recruiting_study, baseline, owner, api_as, django_capture_on_commit_callbacks
):
    (invitation,) = baseline()
    schedule_tick(now=timezone.now() + dt.timedelta(hours=80))  # the window has passed
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(owner).post(url(recruiting_study, f"invitations/{invitation.pk}/remind/"))

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Only an open invitation can be reminded; reload and retry."
    }
    assert Invitation.objects.get(pk=invitation.pk).reminders_sent == 0
    assert not AuditEvent.objects.filter(action="survey.remind").exists()
    assert mail.outbox == []


def test_responses_carry_scores_and_item_answers_and_reading_them_is_audited(
    recruiting_study, baseline, member_of, api_as
):
    first, second = baseline(2)
    response_save(invitation=first, instrument_key="who5", answers=WHO5, submit=True)
    response_save(
        invitation=second, instrument_key="who5", answers={"who5_1": 1}, submit=False
    )  # a draft is not a result
    analyst = member_of(recruiting_study, "analyst")

    rows = api_as(analyst).get(url(recruiting_study, "responses/?instrument=who5")).json()

    assert len(rows) == 1
    row = rows[0]
    assert row["participant"] == first.participant.code
    assert row["scores"] == {"raw": 20, "percentage": 80}
    assert row["bands"] == {"percentage": "above_cutoff"}
    assert row["answers"] == WHO5 and row["instrument_version"] == "1998"
    assert row["entry"] == "baseline" and row["submitted_at"]
    event = AuditEvent.objects.get(action="survey.responses.read")
    assert event.actor == analyst
    assert event.data == {
        "instrument": "who5",
        "participant": "",
        "rows": 1,
        "format": "json",
    }


def test_csv_downloads_have_one_column_per_item_answer(recruiting_study, baseline, owner, api_as):
    (invitation,) = baseline()
    response_save(invitation=invitation, instrument_key="who5", answers=WHO5, submit=True)
    client = api_as(owner)

    responses_csv = client.get(url(recruiting_study, "responses/?download=csv"))
    invitations_csv = client.get(url(recruiting_study, "invitations/?download=csv"))

    assert responses_csv["Content-Type"].startswith("text/csv")
    assert "companion-rct-responses.csv" in responses_csv["Content-Disposition"]
    (row,) = list(csv.DictReader(io.StringIO(responses_csv.content.decode())))
    assert row["instrument"] == "who5" and row["answer.who5_3"] == "4"
    assert row["scores"] == '{"raw": 20, "percentage": 80}'
    rows = list(csv.DictReader(io.StringIO(invitations_csv.content.decode())))
    mine = next(r for r in rows if r["id"] == str(invitation.pk))
    assert mine["participant"] == invitation.participant.code
    assert mine["instruments"] == '["who5", "ucla3", "phq9"]' and mine["status"] == "started"
    assert AuditEvent.objects.get(action="survey.responses.read").data["format"] == "csv"


def test_compliance_counts_a_hand_built_set(recruiting_study, enroll, owner, api_as):
    # given: two participants with weekly invitations in known states
    ana, bia = enroll(recruiting_study), enroll(recruiting_study)
    now = timezone.now()
    version = recruiting_study.current_version

    def make(participant, wave: int, status: str) -> None:
        Invitation.objects.create(
            participant=participant,
            study=recruiting_study,
            entry_key="weekly",
            occurrence_key=f"w{wave}",
            wave=wave,
            instruments=["who5"],
            protocol_version=version,
            status=status,
            opens_at=now,
            closes_at=now,
            created_at=now,
        )

    make(ana, 1, "completed")
    make(ana, 2, "expired")
    make(ana, 3, "scheduled")  # not sent yet: not counted as invited
    make(bia, 1, "completed")
    make(bia, 2, "completed")
    make(bia, 3, "sent")

    body = api_as(owner).get(url(recruiting_study, "compliance/")).json()

    people = {row["participant"]: row for row in body["participants"]}
    assert people[ana.code] == {
        "participant": ana.code,
        "invited": 2,
        "completed": 1,
        "expired": 1,
        "rate": 0.5,
    }
    assert people[bia.code] == {
        "participant": bia.code,
        "invited": 3,
        "completed": 2,
        "expired": 0,
        "rate": 0.6667,
    }
    waves = {(row["entry"], row["wave"]): row for row in body["waves"]}
    assert waves[("weekly", 1)] == {
        "entry": "weekly",
        "wave": 1,
        "invited": 2,
        "completed": 2,
        "expired": 0,
        "rate": 1.0,
    }
    assert waves[("weekly", 2)]["rate"] == 0.5
    assert waves[("weekly", 3)] == {
        "entry": "weekly",
        "wave": 3,
        "invited": 1,
        "completed": 0,
        "expired": 0,
        "rate": 0.0,
    }
