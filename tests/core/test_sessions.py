"""Sessions in the database, read from Redis (core/sessions.py): the database stays the record,
and a sign-out never leaves a session readable from Redis."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from redis.exceptions import ConnectionError as RedisConnectionError

from studyplatform.core import sessions
from studyplatform.core.redis_client import redis_sync
from studyplatform.core.sessions import SessionStore

pytestmark = pytest.mark.django_db


def stored(data: dict) -> str:
    session = SessionStore()
    session.update(data)
    session.save()
    return session.session_key


def test_a_session_is_read_from_redis_without_a_query(django_assert_num_queries):
    # given: a saved session (written to the database and to Redis)
    key = stored({"participant_id": 7})
    # when / then: loading it asks the database nothing
    with django_assert_num_queries(0):
        assert SessionStore(key).load() == {"participant_id": 7}


def test_a_copy_redis_lost_is_read_from_the_database_and_restored():
    # given: a session whose Redis copy is gone (restart, eviction)
    key = stored({"participant_id": 7})
    redis_sync().delete(SessionStore.cache_key_prefix + key)
    # when: it is loaded
    data = SessionStore(key).load()
    # then: the database's data, copied back to Redis
    assert data == {"participant_id": 7}
    assert redis_sync().exists(SessionStore.cache_key_prefix + key)


def test_signing_out_removes_the_session_from_both(client):
    # given: a saved session
    key = stored({"participant_id": 7})
    # when: it is flushed (what logout does)
    session = SessionStore(key)
    session.load()
    session.flush()
    # then: neither Redis nor the database has it, and loading it gives an empty session
    assert not redis_sync().exists(SessionStore.cache_key_prefix + key)
    assert not Session.objects.filter(session_key=key).exists()
    assert SessionStore(key).load() == {}


def test_a_sign_out_redis_cannot_complete_fails_before_the_database_row_goes(monkeypatch):
    # given: a saved session, then Redis stops answering deletes
    key = stored({"participant_id": 7})

    def down(self, key):
        raise RedisConnectionError("down")

    monkeypatch.setattr(sessions._RedisSessionCache, "delete", down)
    # when: the session is flushed
    session = SessionStore(key)
    session.load()
    with pytest.raises(RedisConnectionError):
        session.flush()
    # then: the sign-out failed visibly and whole: the database row is still there, so the
    # Redis copy is not a signed-out session that stays readable
    assert Session.objects.filter(session_key=key).exists()


def test_the_redis_copy_lives_at_most_an_hour():
    # given: a session that lives 30 days
    session = SessionStore()
    session["participant_id"] = 7
    session.set_expiry(30 * 24 * 3600)
    session.save()
    # then: its Redis copy expires within REDIS_COPY_MAX_S
    ttl = redis_sync().ttl(SessionStore.cache_key_prefix + session.session_key)
    assert 0 < ttl <= sessions.REDIS_COPY_MAX_S
