"""core.redis_client.InFlight: a Redis pipeline split in two (commands written now, replies
read later), which the chat send overlaps with its database read (issue 19). Its one risk is a
pooled connection handed on with replies nobody read; these tests put that connection back in
use and check it answers its own commands."""

from __future__ import annotations

import secrets

import pytest
from redis.exceptions import ResponseError

from studyplatform.core.redis_client import InFlight, redis_sync


@pytest.fixture
def keys():
    client = redis_sync()
    prefix = f"test:inflight:{secrets.token_hex(4)}"
    made = [f"{prefix}:{name}" for name in ("a", "b", "counter", "hash")]
    yield made
    client.delete(*made)


def next_get_is_clean(client, key: str) -> bool:
    """A GET through the pool (the connection used last is handed out first) returns the key's
    own value, not a reply left over from earlier commands."""
    client.set(key, "own value")
    return client.get(key) == b"own value"


def test_the_replies_are_what_a_pipeline_returns(keys):
    # given: two values and a counter
    a, b, counter, _ = keys
    client = redis_sync()
    client.set(a, "1")
    commands = [("MGET", a, b), ("INCRBY", counter, 1), ("EXPIRE", counter, 60), ("GET", a)]
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    expected = pipe.execute()
    # when
    replies = InFlight(client, commands).result()
    # then: the same shapes, the counter one further
    assert expected == [[b"1", None], 1, True, b"1"]
    assert replies == [[b"1", None], 2, True, b"1"]


def test_other_commands_can_run_between_the_write_and_the_read(keys):
    # given: commands written and not read yet
    a, b, counter, _ = keys
    client = redis_sync()
    flight = InFlight(client, [("INCRBY", counter, 5), ("GET", counter)])
    # when: other work uses Redis meanwhile (another pooled connection)
    client.set(b, "meanwhile")
    assert client.get(b) == b"meanwhile"
    # then: the replies are still this flight's
    assert flight.result() == [5, b"5"]
    assert next_get_is_clean(client, a)


def test_discarded_replies_never_reach_the_next_command(keys):
    # given: replies left unread on purpose
    a, b, counter, _ = keys
    client = redis_sync()
    client.set(b, "stale")
    flight = InFlight(client, [("GET", b), ("INCRBY", counter, 1)])
    # when
    flight.discard()
    # then: the commands ran, and the pool's next command reads its own reply
    assert next_get_is_clean(client, a)
    assert client.get(counter) == b"1"


def test_an_error_reply_drops_the_rest_and_leaves_the_pool_clean(keys):
    # given: a command Redis refuses (a string command on a hash) before another one
    a, b, _, hashed = keys
    client = redis_sync()
    client.hset(hashed, "field", "x")
    client.set(b, "after")
    flight = InFlight(client, [("GET", hashed), ("GET", b)])
    # when / then: the refusal is raised, and the unread reply is not handed on
    with pytest.raises(ResponseError):
        flight.result()
    assert next_get_is_clean(client, a)


def test_replies_are_read_once():
    flight = InFlight(redis_sync(), [("PING",)])
    assert flight.result() == [True]
    with pytest.raises(RuntimeError):
        flight.result()
    flight.discard()  # nothing left to drop: no error
