"""The chat send's first Redis round trip (services.PendingSessionCounters): one script reads the
session's Redis copy and, for the participant and study it names, the gate tokens and the
send's counters. Checked against real Redis."""

from __future__ import annotations

import json
import secrets

import pytest
from django.utils import timezone

from studyplatform.chat import services
from studyplatform.core.gate_epoch import participant_key, study_key
from studyplatform.core.redis_client import redis_sync
from studyplatform.participants.session import SESSION_KEY, SESSION_STUDY_KEY


@pytest.fixture
def copy_key():
    key = f"sp:session:test-{secrets.token_hex(8)}"
    yield key
    redis_sync().delete(key)


@pytest.fixture
def ids():
    """A participant and a study id no other test uses, with their keys removed afterwards."""
    participant_id, study_id = 10**12 + secrets.randbelow(10**9), 10**12 + secrets.randbelow(10**9)
    yield participant_id, study_id
    keys = redis_sync().keys(f"chat:*:{participant_id}:*")
    redis_sync().delete(participant_key(participant_id), study_key(study_id), *keys)


def read(copy_key):
    return services.session_counters_begin(copy_key, timezone.now()).result()


def test_the_script_reads_the_session_and_the_counters_it_names(copy_key, ids):
    participant_id, study_id = ids
    now = timezone.now()
    data = {SESSION_KEY: participant_id, SESSION_STUDY_KEY: study_id, "other": [1, "x"]}
    redis_sync().set(copy_key, json.dumps(data))
    redis_sync().set(participant_key(participant_id), "tp")
    redis_sync().set(services._tokens_key(participant_id, now), 1234)
    first = read(copy_key)
    second = read(copy_key)
    assert json.loads(first.session_copy) == data
    assert (first.participant_id, first.study_id) == (participant_id, study_id)
    assert first.counters.gate_tokens == ["tp", None]
    assert first.counters.tokens == 1234
    # The minute's counter: counted once per read, and expiring (INCRBY + EXPIRE).
    assert second.counters.count == first.counters.count + 1
    rate_key = services._rate_key(participant_id, timezone.now())
    assert 0 < redis_sync().ttl(rate_key) <= services.RATE_KEY_TTL_S


@pytest.mark.parametrize(
    "data",
    [
        {SESSION_KEY: "12", SESSION_STUDY_KEY: 3},
        {SESSION_KEY: 12.5, SESSION_STUDY_KEY: 3},
        {SESSION_KEY: 12, SESSION_STUDY_KEY: 0},
        {SESSION_KEY: -12, SESSION_STUDY_KEY: 3},
        {SESSION_KEY: 2**60, SESSION_STUDY_KEY: 3},
        {SESSION_KEY: 12},
        {"_auth_user_id": "5"},
        [12, 3],
        "a string",
    ],
)
def test_a_session_without_whole_ids_returns_its_copy_and_counts_nothing(copy_key, data):
    redis_sync().set(copy_key, json.dumps(data))
    before = set(redis_sync().keys("chat:rate:*"))
    got = read(copy_key)
    assert json.loads(got.session_copy) == data
    assert (got.participant_id, got.study_id, got.counters) == (None, None, None)
    assert set(redis_sync().keys("chat:rate:*")) - before == set()


def test_a_copy_that_is_not_json_is_returned_as_it_is(copy_key):
    redis_sync().set(copy_key, b"\xff{not json")
    assert read(copy_key) == services.SessionCounters(b"\xff{not json")


def test_no_copy_reads_nothing(copy_key):
    assert read(copy_key) == services.SessionCounters(None)


@pytest.mark.django_db
def test_the_session_takes_the_copy_it_is_handed_and_falls_back_to_loading_otherwise():
    from studyplatform.core.sessions import SessionStore

    stored = SessionStore()
    stored["k"] = "from the database"
    stored.create()
    # A copy handed over is the session's data: no load.
    handed = SessionStore(stored.session_key)
    assert handed.unread_copy_key() == stored.cache_key
    assert handed.take_copy(json.dumps({"k": "handed"}).encode())
    assert handed["k"] == "handed"
    assert handed.unread_copy_key() is None  # loaded now
    assert not handed.take_copy(json.dumps({"k": "again"}).encode())
    # A copy that is not a JSON object is refused, and the session loads as usual.
    for bad in (b"\xff", b"[1, 2]", b"null"):
        session = SessionStore(stored.session_key)
        assert not session.take_copy(bad)
        assert session["k"] == "from the database"
    # No session key (no cookie): nothing to read.
    assert SessionStore().unread_copy_key() is None
    stored.delete()
