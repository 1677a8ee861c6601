"""The researcher chat API: the role matrix, study isolation, the audited message log with its
branches, blinding of arms and models, and chat statistics on hand-built messages."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from studyplatform.chat.models import Conversation, MemoryNote, Message
from studyplatform.core.models import AuditEvent
from studyplatform.safety.services import safety_alert_raise
from studyplatform.studies.services import study_create_from_protocol
from tests.factories import launch_study

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 3, 12, 0, tzinfo=dt.UTC)


def start_conversation(participant, *, at=T0, imported=False, arm=None) -> Conversation:
    return Conversation.objects.create(
        participant=participant,
        arm=arm or participant.allocation.arm,
        created_at=at,
        updated_at=at,
        imported=imported,
    )


def say(conversation, role, content="", *, at=T0, parent=None, **extra) -> Message:
    extra.setdefault("status", "complete")
    return Message.objects.create(
        conversation=conversation,
        participant=conversation.participant,
        role=role,
        content=content,
        created_at=at,
        parent=parent,
        **extra,
    )


def reply(conversation, content="ok", *, at=T0, parent=None, **extra) -> Message:
    values = {
        "model_requested": "gpt-pinned",
        "model_reported": "gpt-pinned-2025-01-01",
        "system_fingerprint": "fp_1",
        "latency_ms": 400,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "error_code": "",
    }
    values.update(extra)
    return say(conversation, "assistant", content, at=at, parent=parent, **values)


def make_other_study(rct_doc, make_user, enroll):
    doc = copy.deepcopy(rct_doc)
    doc["study"]["slug"] = "study-b"
    bob = make_user("bob")
    study_b = study_create_from_protocol(doc=doc, author=bob)
    study_b = launch_study(study_b, bob)
    participant = enroll(study_b)
    conversation = start_conversation(participant)
    say(conversation, "user", "study B text")
    alert = safety_alert_raise(
        participant=participant,
        source="chat",
        severity="high",
        category="self_harm",
        excerpt="study B excerpt",
        detector="lexicon",
    )
    return study_b, conversation, alert


OWNER, DESIGNER, MONITOR, ANALYST, SAFETY = (
    "owner",
    "designer",
    "monitor",
    "analyst",
    "safety_reviewer",
)
EVERYONE = frozenset({OWNER, DESIGNER, MONITOR, ANALYST, SAFETY})
READERS = frozenset({OWNER, ANALYST, SAFETY})  # message content
REVIEWERS = frozenset({OWNER, SAFETY})  # safety alerts

# Written by hand, not read from studies/roles.py, so a mistake in the role table fails here.
# (method, path under /api/studies/<slug>/, body, success status, roles allowed), in an order
# that works (acknowledge before resolve).
CHAT_MATRIX = [
    ("get", "conversations/", None, 200, READERS),
    ("get", "conversations/?participant=P-X&imported=0", None, 200, READERS),
    ("get", "conversations/{conversation}/", None, 200, READERS),
    ("get", "chat-stats/", None, 200, EVERYONE),
    ("get", "chat-stats/?days=7", None, 200, EVERYONE),
    ("get", "safety-alerts/", None, 200, REVIEWERS),
    ("get", "safety-alerts/?status=open", None, 200, REVIEWERS),
    ("get", "safety-alerts/{alert}/", None, 200, REVIEWERS),
    ("post", "safety-alerts/{alert}/acknowledge/", {"note": "on it"}, 200, REVIEWERS),
    ("post", "safety-alerts/{alert}/resolve/", {"note": "called them"}, 200, REVIEWERS),
]


def chat_endpoints(slug, conversation_id, alert_id):
    """(method, url, body, success status, allowed roles) for every chat endpoint."""
    base = f"/api/studies/{slug}/"
    return [
        (method, base + tail.format(conversation=conversation_id, alert=alert_id), body, ok, who)
        for method, tail, body, ok, who in CHAT_MATRIX
    ]


def call(client, method, url, body):
    return (
        getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)
    )


@pytest.mark.parametrize("role", sorted(EVERYONE))
def test_each_role_gets_exactly_its_chat_permissions(
    role, recruiting_study, member_of, api_as, enroll
):
    # given: a conversation and an alert in the study, and a member holding `role`
    participant = enroll(recruiting_study)
    conversation = start_conversation(participant)
    say(conversation, "user", "hello")
    alert = safety_alert_raise(
        participant=participant,
        source="chat",
        severity="high",
        category="self_harm",
        excerpt="an excerpt",
        detector="lexicon",
    )
    client = api_as(member_of(recruiting_study, role))
    # then: allowed endpoints answer their exact success status, the others are 403
    rows = chat_endpoints(recruiting_study.slug, conversation.pk, alert.pk)
    for method, url, body, ok, allowed in rows:
        response = call(client, method, url, body)
        expected = ok if role in allowed else 403
        assert response.status_code == expected, (role, url, response.status_code)
    alert.refresh_from_db()
    assert (alert.status == "resolved") == (role in REVIEWERS)


@pytest.mark.parametrize("role", sorted(EVERYONE))
def test_a_member_of_another_study_gets_404_on_every_chat_endpoint(
    role, recruiting_study, member_of, make_user, api_as, rct_doc, enroll
):
    # given: study B with a conversation and an alert, and a member of study A
    study_b, conversation_b, alert_b = make_other_study(rct_doc, make_user, enroll)
    client = api_as(member_of(recruiting_study, role))
    # then: study B's endpoints are 404, and nothing changed
    for method, url, body, *_ in chat_endpoints(study_b.slug, conversation_b.pk, alert_b.pk):
        assert call(client, method, url, body).status_code == 404, (role, url)
    alert_b.refresh_from_db()
    assert alert_b.status == "open" and alert_b.notes == ""
    assert not AuditEvent.objects.filter(action__in=["chat.read", "safety.read"]).exists()


def test_study_b_ids_under_study_a_are_404_even_for_an_owner(
    recruiting_study, owner, make_user, api_as, rct_doc, enroll
):
    # given: the owner of study A (every permission there) and study B's conversation and alert
    _, conversation_b, alert_b = make_other_study(rct_doc, make_user, enroll)
    client = api_as(owner)
    base = f"/api/studies/{recruiting_study.slug}"
    by_id = [
        ("get", f"{base}/conversations/{conversation_b.pk}/", None),
        ("get", f"{base}/safety-alerts/{alert_b.pk}/", None),
        ("post", f"{base}/safety-alerts/{alert_b.pk}/acknowledge/", {"note": "x"}),
        ("post", f"{base}/safety-alerts/{alert_b.pk}/resolve/", {"note": "x"}),
    ]
    # then: B's ids looked up under A's slug do not exist
    for method, url, body in by_id:
        assert call(client, method, url, body).status_code == 404, url
    assert client.get(f"{base}/safety-alerts/").data == []
    assert client.get(f"{base}/conversations/").data == []
    alert_b.refresh_from_db()
    assert alert_b.status == "open"


def test_the_list_shows_codes_counts_and_arm_only_with_allocation(
    recruiting_study, member_of, api_as, enroll
):
    # given: one participant with a two-message conversation and an imported one
    participant = enroll(recruiting_study, email="secret-person@example.org")
    conversation = start_conversation(participant, at=T0)
    conversation.title = "my private worries"
    conversation.save()
    question = say(conversation, "user", "hi", at=T0)
    reply(conversation, parent=question, at=T0 + dt.timedelta(seconds=2))
    start_conversation(participant, at=T0 - dt.timedelta(days=30), imported=True)
    analyst = api_as(member_of(recruiting_study, "analyst"))
    reviewer = api_as(member_of(recruiting_study, "safety_reviewer"))
    url = f"/api/studies/{recruiting_study.slug}/conversations/"
    # when
    analyst_rows = analyst.get(url).data
    reviewer_rows = reviewer.get(url + "?imported=0").data
    # then: the analyst sees the arm, the reviewer (blinded) does not; no titles, no email
    assert [r["imported"] for r in analyst_rows] == [False, True]
    assert analyst_rows[0] == {
        "id": conversation.pk,
        "participant": participant.code,
        "created_at": T0.isoformat(),
        "updated_at": T0.isoformat(),
        "imported": False,
        "message_count": 2,
        "arm": participant.allocation.arm.key,
    }
    assert len(reviewer_rows) == 1 and "arm" not in reviewer_rows[0]
    text = str(analyst.get(url).content)
    assert "my private worries" not in text and "secret-person" not in text
    assert analyst.get(url + "?participant=NOPE").data == []
    assert len(analyst.get(url + f"?participant={participant.code}").data) == 2
    assert not AuditEvent.objects.filter(action="chat.read").exists()


def test_the_list_takes_the_same_number_of_queries_for_many_conversations(
    recruiting_study, owner, api_as, enroll
):
    client = api_as(owner)
    url = f"/api/studies/{recruiting_study.slug}/conversations/"
    participant = enroll(recruiting_study)
    say(start_conversation(participant), "user", "one")
    client.get(url)  # warm the per-user permission cache
    with CaptureQueriesContext(connection) as one:
        assert len(client.get(url).data) == 1
    for i in range(5):
        say(start_conversation(enroll(recruiting_study), at=T0 + dt.timedelta(minutes=i)), "user")
    with CaptureQueriesContext(connection) as six:
        assert len(client.get(url).data) == 6
    assert len(six.captured_queries) == len(one.captured_queries)


def test_the_timeline_shows_every_branch_and_marks_the_active_one(
    recruiting_study, member_of, api_as, enroll
):
    # given: a question answered twice (a regeneration); the participant sees the second answer
    participant = enroll(recruiting_study)
    conversation = start_conversation(participant)
    question = say(conversation, "user", "what is CBT?", at=T0)
    first = reply(
        conversation,
        "first answer",
        parent=question,
        at=T0 + dt.timedelta(seconds=3),
        status="error",
        error_code="upstream_timeout",
        latency_ms=None,
    )
    second = reply(
        conversation,
        "second answer",
        parent=question,
        at=T0 + dt.timedelta(seconds=9),
        finish_reason="stop",
        first_token_at=T0 + dt.timedelta(seconds=9, milliseconds=400),
        completed_at=T0 + dt.timedelta(seconds=12),
        tokens_estimated=True,
    )
    conversation.active_leaf = second
    conversation.save()
    user = member_of(recruiting_study, "analyst")
    # when
    body = (
        api_as(user)
        .get(f"/api/studies/{recruiting_study.slug}/conversations/{conversation.pk}/")
        .data
    )
    # then: all three messages, the regenerated branch marked inactive
    assert body["title"] == "" and body["arm"] == participant.allocation.arm.key
    by_id = {m["id"]: m for m in body["messages"]}
    assert [m["id"] for m in body["messages"]] == [question.pk, first.pk, second.pk]
    assert {k: by_id[first.pk][k] for k in ("is_active_branch", "status", "error_code")} == {
        "is_active_branch": False,
        "status": "error",
        "error_code": "upstream_timeout",
    }
    assert by_id[question.pk]["is_active_branch"] and by_id[second.pk]["is_active_branch"]
    assert by_id[second.pk] == {
        "id": second.pk,
        "parent_id": question.pk,
        "role": "assistant",
        "status": "complete",
        "content": "second answer",
        "created_at": (T0 + dt.timedelta(seconds=9)).isoformat(),
        "first_token_at": (T0 + dt.timedelta(seconds=9, milliseconds=400)).isoformat(),
        "completed_at": (T0 + dt.timedelta(seconds=12)).isoformat(),
        "latency_ms": 400,
        "model_requested": "gpt-pinned",
        "model_reported": "gpt-pinned-2025-01-01",
        "system_fingerprint": "fp_1",
        "finish_reason": "stop",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "tokens_estimated": True,
        "error_code": "",
        "imported": False,
        "is_active_branch": True,
    }
    # and: reading it wrote one audit event naming the conversation and the participant's code
    event = AuditEvent.objects.get(action="chat.read")
    assert (event.actor, event.target_type, event.target_id, event.study_slug, event.data) == (
        user,
        "chat.conversation",
        str(conversation.pk),
        recruiting_study.slug,
        {"participant": participant.code},
    )


def test_a_blinded_reader_sees_neither_the_arm_nor_the_model_names(
    recruiting_study, member_of, api_as, enroll
):
    # given: a safety reviewer (reads chat, no allocation); each arm pins a model
    conversation = start_conversation(enroll(recruiting_study))
    reply(conversation, "answer", parent=say(conversation, "user", "q"))
    client = api_as(member_of(recruiting_study, "safety_reviewer"))
    # when
    body = client.get(f"/api/studies/{recruiting_study.slug}/conversations/{conversation.pk}/").data
    # then
    assert "arm" not in body
    for message in body["messages"]:
        assert not {"model_requested", "model_reported", "system_fingerprint"} & set(message)
    assert "gpt-pinned" not in str(body)


def test_a_conversation_without_an_active_leaf_follows_the_newest_message(
    recruiting_study, owner, api_as, enroll
):
    conversation = start_conversation(enroll(recruiting_study))
    question = say(conversation, "user", "q", at=T0)
    old = reply(conversation, "a", parent=question, at=T0 + dt.timedelta(seconds=1))
    new = reply(conversation, "b", parent=question, at=T0 + dt.timedelta(seconds=5))
    body = (
        api_as(owner)
        .get(f"/api/studies/{recruiting_study.slug}/conversations/{conversation.pk}/")
        .data
    )
    active = {m["id"] for m in body["messages"] if m["is_active_branch"]}
    assert active == {question.pk, new.pk} and old.pk not in active


def participants_in_both_arms(study, enroll):
    """Enroll until both arms have a participant (allocation is concealed and randomized)."""
    by_arm = {}
    for _ in range(40):
        participant = enroll(study)
        by_arm.setdefault(participant.allocation.arm.key, participant)
        if len(by_arm) == 2:
            return by_arm
    raise AssertionError("allocation never reached both arms")


def test_chat_stats_per_arm_on_hand_built_messages(recruiting_study, member_of, api_as, enroll):
    # given: in arm "legacy" ten finished replies with latencies 100..1000 ms (one error, one
    # length), one reply still streaming; in arm "current" one reply of 300 ms
    now = timezone.now()
    people = participants_in_both_arms(recruiting_study, enroll)
    legacy = start_conversation(people["legacy"], at=now - dt.timedelta(hours=2))
    statuses = ["complete"] * 8 + ["error", "length"]
    for i, status in enumerate(statuses):
        at = now - dt.timedelta(hours=1, minutes=i)
        q = say(legacy, "user", "q", at=at)
        reply(
            legacy,
            parent=q,
            at=at,
            status=status,
            latency_ms=100 * (i + 1),
            model_reported="gpt-a-2024" if i == 0 else "gpt-a-2025",
        )
    streaming = say(legacy, "user", "q", at=now)
    reply(
        legacy,
        parent=streaming,
        at=now,
        status="streaming",
        latency_ms=None,
        prompt_tokens=None,
        completion_tokens=None,
        model_reported="",
        system_fingerprint="",
    )
    current = start_conversation(people["current"], at=now - dt.timedelta(hours=1))
    reply(
        current,
        parent=say(current, "user", "q", at=now),
        at=now,
        latency_ms=300,
        model_reported="gpt-b",
        system_fingerprint="fp_b",
    )
    # and: imported history and a ten-day-old exchange, which the numbers must leave out
    imported = start_conversation(people["legacy"], at=now, imported=True)
    reply(
        imported,
        parent=say(imported, "user", "old", at=now, imported=True),
        at=now,
        imported=True,
        latency_ms=99999,
    )
    old = start_conversation(people["current"], at=now - dt.timedelta(days=10))
    reply(
        old,
        parent=say(old, "user", "q", at=now - dt.timedelta(days=10)),
        at=now - dt.timedelta(days=10),
        latency_ms=5000,
    )
    analyst = api_as(member_of(recruiting_study, "analyst"))
    # when
    body = analyst.get(f"/api/studies/{recruiting_study.slug}/chat-stats/?days=7").data
    # then: exact numbers per arm
    assert body["days"] == 7
    assert body["arms"]["legacy"] == {
        "conversations": 1,
        "user_messages": 11,
        "assistant_replies": 11,
        "replies_by_status": {
            "complete": 8,
            "length": 1,
            "cancelled": 0,
            "error": 1,
            "filtered": 0,
        },
        "error_rate": 0.1,
        "latency_ms_p50": 550.0,
        "latency_ms_p95": 955.0,
        "tokens_in": 100,
        "tokens_out": 50,
        "models_reported": {"gpt-a-2025": 9, "gpt-a-2024": 1},
        "system_fingerprints": {"fp_1": 10},
    }
    assert body["arms"]["current"]["latency_ms_p50"] == 300
    assert body["arms"]["current"]["latency_ms_p95"] == 300
    assert body["arms"]["current"]["conversations"] == 1
    # and: the total pools both arms (latencies 100..1000 plus 300)
    total = body["total"]
    assert (total["conversations"], total["user_messages"], total["assistant_replies"]) == (
        2,
        12,
        12,
    )
    assert total["error_rate"] == pytest.approx(1 / 11)
    assert (total["latency_ms_p50"], total["latency_ms_p95"]) == (500, 950)
    assert total["models_reported"] == {"gpt-a-2025": 9, "gpt-a-2024": 1, "gpt-b": 1}
    # and: without `days` the ten-day-old exchange counts
    all_time = analyst.get(f"/api/studies/{recruiting_study.slug}/chat-stats/").data
    assert all_time["days"] is None and all_time["arms"]["current"]["assistant_replies"] == 2
    assert all_time["arms"]["current"]["latency_ms_p95"] == pytest.approx(4765)


def test_chat_stats_give_a_blinded_member_totals_only(recruiting_study, member_of, api_as, enroll):
    conversation = start_conversation(enroll(recruiting_study), at=timezone.now())
    reply(
        conversation,
        parent=say(conversation, "user", "q", at=timezone.now()),
        at=timezone.now(),
        latency_ms=200,
    )
    body = (
        api_as(member_of(recruiting_study, "monitor"))
        .get(f"/api/studies/{recruiting_study.slug}/chat-stats/")
        .data
    )
    assert "arms" not in body
    assert body["total"]["assistant_replies"] == 1 and body["total"]["latency_ms_p50"] == 200


def test_chat_stats_on_an_empty_study_have_no_rates(recruiting_study, owner, api_as):
    body = api_as(owner).get(f"/api/studies/{recruiting_study.slug}/chat-stats/").data
    assert body["total"]["error_rate"] is None and body["total"]["latency_ms_p50"] is None
    assert set(body["arms"]) == {"legacy", "current"}


def test_chat_stats_reject_a_bad_days_value(recruiting_study, owner, api_as):
    response = api_as(owner).get(f"/api/studies/{recruiting_study.slug}/chat-stats/?days=0")
    assert response.status_code == 400
    assert "days" in response.data


def test_opening_a_message_or_memory_in_the_admin_is_audited(
    recruiting_study, make_user, client, enroll
):
    # given: a platform admin and a participant's message and memory note
    admin_user = make_user("root", is_superuser=True, is_staff=True)
    participant = enroll(recruiting_study)
    conversation = start_conversation(participant)
    message = say(conversation, "user", "very private sentence")
    memory = MemoryNote.objects.create(participant=participant, text="call me Ana")
    client.force_login(admin_user)
    # when: the lists are opened, nothing is audited and no text is shown
    listing = client.get("/admin/chat/message/")
    assert listing.status_code == 200 and b"very private sentence" not in listing.content
    assert client.get("/admin/chat/conversation/").status_code == 200
    assert not AuditEvent.objects.filter(action__in=["chat.read", "memory.read"]).exists()
    # when: the details are opened
    detail = client.get(f"/admin/chat/message/{message.pk}/change/")
    memory_page = client.get(f"/admin/chat/memorynote/{memory.pk}/change/")
    # then: the text is shown and each read is audited
    assert detail.status_code == 200 and b"very private sentence" in detail.content
    assert memory_page.status_code == 200 and b"call me Ana" in memory_page.content
    events = AuditEvent.objects.filter(actor=admin_user).order_by("id")
    assert [(e.action, e.target_id, e.data) for e in events] == [
        ("chat.read", str(message.pk), {"participant": participant.code, "via": "admin"}),
        ("memory.read", str(memory.pk), {"participant": participant.code, "via": "admin"}),
    ]
