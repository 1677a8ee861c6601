"""Gate epochs: one Redis token per participant and one per study that a session's cached
participant gate (participants.session) is tied to; here in core because studies and
participants both bump them. Anything that can change the gate's answer replaces a token, and
every session that cached the old one checks again from the database.

Bumped by: withdrawal and re-consent (the participant's token), a new protocol version (the only
way a new consent version arrives) and every study status change, closing in particular (the
study's token). Enrolment and simulated cohorts write a participant's first consent record,
which no session can have cached a gate for yet.

Tokens are random, not counters, and expire: a token Redis lost (restart, eviction) or that
expired is replaced by a fresh one, so a lost bump can never make an old cached gate match
again, and every cached gate is re-checked at least every GATE_TOKEN_TTL_S.
"""

from __future__ import annotations

import logging
import secrets

from django.db import transaction
from redis.exceptions import RedisError

from studyplatform.core.redis_client import redis_sync

logger = logging.getLogger(__name__)

# The longest a cached gate is trusted without a database check, whatever happens to Redis.
GATE_TOKEN_TTL_S = 6 * 3600


def participant_key(participant_id: int) -> str:
    return f"gate:p:{participant_id}"


def study_key(study_id: int) -> str:
    return f"gate:s:{study_id}"


def _new_token() -> str:
    return secrets.token_hex(8)


def _bump_now(keys: list[str]) -> None:
    try:
        pipe = redis_sync().pipeline(transaction=False)
        for key in keys:
            pipe.set(key, _new_token(), ex=GATE_TOKEN_TTL_S)
        pipe.execute()
    except RedisError:
        # Not raised: a withdrawal or a study closing must go through when Redis is down.
        # What the stale cached gates would still allow is limited (withdrawal and study status
        # are read from the database on every send; a withdrawn participant's INSERT is refused
        # in its own transaction), and the tokens expire within GATE_TOKEN_TTL_S.
        logger.exception("gate epoch not bumped for %s", ", ".join(keys))


def gate_bump(*, participant_id: int | None = None, study_id: int | None = None) -> None:
    """Invalidate every cached gate of this participant and/or every participant of this study.

    Bumped at once and again after the surrounding transaction commits: a request that read
    the token between the first bump and the commit saw the old database state, and the second
    bump makes it check again."""
    keys = []
    if participant_id is not None:
        keys.append(participant_key(participant_id))
    if study_id is not None:
        keys.append(study_key(study_id))
    if not keys:
        return
    _bump_now(keys)
    transaction.on_commit(lambda: _bump_now(keys), robust=True)


def gate_keys(participant_id: int, study_id: int) -> list[str]:
    """The keys of the participant's and the study's tokens, in the order gate_tokens reads
    them (for a caller that reads them in a pipeline of its own, then decode_tokens)."""
    return [participant_key(participant_id), study_key(study_id)]


def decode_tokens(values: list) -> list[str | None]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def gate_tokens(participant_id: int, study_id: int) -> list[str]:
    """The participant's and the study's current tokens (one round trip; a second one only to
    create a missing token). Read BEFORE the database check whose answer is cached under them.
    Raises RedisError."""
    keys = gate_keys(participant_id, study_id)
    client = redis_sync()
    values = client.mget(keys)
    if None in values:
        pipe = client.pipeline(transaction=False)
        for key, value in zip(keys, values, strict=True):
            if value is None:
                pipe.set(key, _new_token(), nx=True, ex=GATE_TOKEN_TTL_S)
        pipe.mget(keys)
        values = pipe.execute()[-1]
    return decode_tokens(values)
