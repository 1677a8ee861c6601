"""Chat writes: conversations, sending a message (limits, idempotency, safety screening),
building the model request, and recording the reply as it streams."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from redis.exceptions import RedisError

from studyplatform.core.audit import audit_record
from studyplatform.core.events import MessageStored, publish
from studyplatform.core.fields import DecryptedTexts
from studyplatform.core.model_endpoints import Endpoint, EndpointUnavailable, endpoint_resolve
from studyplatform.core.prepared import prepared_cursor
from studyplatform.core.redis_client import redis_sync
from studyplatform.participants.models import Participant
from studyplatform.safety import services as safety_services

from . import message_record
from .models import Conversation, MemoryNote, Message, ReplyCode
from .providers import ChatRequest, StreamEnd, Timeouts, estimate_tokens

logger = logging.getLogger(__name__)

DEFAULT_LIMITS = {"messages_per_minute": 10, "tokens_per_day": 200_000, "max_message_chars": 8000}
# Tokens kept free for the reply when the arm does not set max_tokens.
DEFAULT_REPLY_RESERVE = 1024


class ChatError(ValueError):
    """A reason a message cannot be sent; `code` maps to a translated message in the view."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(detail or code)
        self.code = code


def limits_for(participant: Participant) -> dict[str, int]:
    return {**DEFAULT_LIMITS, **participant.study.protocol.get("limits", {})}


def conversation_create(
    *, participant: Participant, now: dt.datetime | None = None, task_text: str = ""
) -> Conversation:
    """A new conversation in the participant's arm; `task_text` when it is opened from a daily
    conversation task (surveys.daily_tasks), whose text then goes to the model with the
    system prompt."""
    now = now or timezone.now()
    return Conversation.objects.create(
        participant=participant,
        arm=participant.allocation.arm,
        created_at=now,
        updated_at=now,
        task_text=task_text,
    )


def _tokens_key(participant_id: int, day: dt.datetime) -> str:
    return f"chat:tokens:{participant_id}:{day:%Y%m%d}"


# Tokens-used counters live two days: the day they count plus slack for clocks and time zones.
TOKENS_KEY_TTL_S = 2 * 24 * 3600
# Add to a day's counter only while it exists: a counter Redis lost (restart, eviction) is
# rebuilt from the message log at the next send, and must not restart at zero.
_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return nil
"""


# Kept hand-written rather than django-ratelimit (issue 17 allows it where a library cannot do
# the job; the form limits in core/ratelimit.py did move to it). Every chat send runs this check
# (issue 19 optimised the path), and django-ratelimit's get_usage through Django's cache costs
# three round trips (SET NX, then EXISTS + INCR in Django's incr) and cannot fetch the tokens
# counter in the same trip, so four in all against this pipeline's one. Measured with
# benchmarks/chat_ratelimit.py on the embedded Redis (2-core machine, shared): 159 us vs
# 1615 us per check (10.2x) and 613 us vs 3803 us (6.2x) under heavier load.
def _rate_and_tokens(participant: Participant, now: dt.datetime) -> tuple[int, int | None]:
    """One Redis round trip for the send's two limits: the fixed one-minute window counter
    (INCR + EXPIRE) and today's tokens-used counter (None when Redis does not have it)."""
    pipe = redis_sync().pipeline(transaction=False)
    _queue_rate_and_tokens(pipe, participant.pk, now)
    count, _, tokens = pipe.execute()
    return count, None if tokens is None else int(tokens)


def _rate_key(participant_id: int | str, now: dt.datetime) -> str:
    return f"chat:rate:{participant_id}:{now:%Y%m%d%H%M}"


RATE_KEY_TTL_S = 120


def _rate_and_tokens_commands(participant_id: int, now: dt.datetime) -> list[tuple]:
    key = _rate_key(participant_id, now)
    return [
        ("INCRBY", key, 1),
        ("EXPIRE", key, RATE_KEY_TTL_S),
        ("GET", _tokens_key(participant_id, now)),
    ]


def _queue_rate_and_tokens(pipe, participant_id: int, now: dt.datetime) -> None:
    for command in _rate_and_tokens_commands(participant_id, now):
        pipe.execute_command(*command)


@dataclass(frozen=True)
class SendCounters:
    """What a chat send reads from Redis, in one round trip taken before the participant gate
    (send_counters): the gate tokens the session's cached consent answer is checked against,
    and the send's rate count and today's tokens counter (as _rate_and_tokens)."""

    gate_tokens: list[str | None]
    count: int
    tokens: int | None


def _counters_from_replies(gate: list, count: int, tokens) -> SendCounters:
    from studyplatform.core.gate_epoch import decode_tokens

    return SendCounters(decode_tokens(gate), count, None if tokens is None else int(tokens))


# The session's Redis copy, and send_counters' reads for the participant and study it names, in
# one round trip (PendingSessionCounters). The keys of the counters come from the session, so
# they are not declared in KEYS: the platform uses one Redis server, never a cluster, where
# that would matter. Key templates come as ARGV with {p} and {s} for the ids; the ids must be
# whole numbers (the session's JSON); otherwise only the session copy is returned.
_SESSION_AND_COUNTERS = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {} end
local ok, data = pcall(cjson.decode, raw)
if not ok or type(data) ~= 'table' then return {raw} end
local p, s = data[ARGV[1]], data[ARGV[2]]
if type(p) ~= 'number' or type(s) ~= 'number' or p ~= math.floor(p) or s ~= math.floor(s)
  or p < 1 or s < 1 or p > 9007199254740991 or s > 9007199254740991 then
  return {raw}
end
p = string.format('%d', p)
s = string.format('%d', s)
local function key(template)
  return (string.gsub(string.gsub(template, '{p}', p), '{s}', s))
end
local gate = redis.call('MGET', key(ARGV[3]), key(ARGV[4]))
local rate = key(ARGV[5])
local count = redis.call('INCRBY', rate, 1)
redis.call('EXPIRE', rate, tonumber(ARGV[7]))
local tokens = redis.call('GET', key(ARGV[6]))
return {raw, p, s, gate, count, tokens}
"""


@dataclass(frozen=True)
class SessionCounters:
    """What PendingSessionCounters read: the session's Redis copy (None when Redis has none),
    and, when that session names a participant and a study, send_counters' reads for them."""

    session_copy: bytes | None
    participant_id: int | None = None
    study_id: int | None = None
    counters: SendCounters | None = None


class PendingSessionCounters:
    """The chat send's first Redis round trip, begun from the session cookie alone: the
    session's Redis copy and, for the participant and study that copy names, the gate tokens
    and the send's rate and tokens counters (what send_counters reads), in one script. Begun
    before the conversation is read from the database, so that the two overlap: the session's
    own GET was a round trip of its own before (~0.35 ms of the send on a mostly idle server,
    issue 19). result() reads the replies; discard() when they are no longer wanted."""

    def __init__(self, session_copy_key: str, now: dt.datetime) -> None:
        from studyplatform.core.gate_epoch import participant_key, study_key
        from studyplatform.core.redis_client import InFlight
        from studyplatform.participants.session import SESSION_KEY, SESSION_STUDY_KEY

        self._flight = InFlight(
            redis_sync(),
            [
                (
                    "EVAL",
                    _SESSION_AND_COUNTERS,
                    1,
                    session_copy_key,
                    SESSION_KEY,
                    SESSION_STUDY_KEY,
                    participant_key("{p}"),
                    study_key("{s}"),
                    _rate_key("{p}", now),
                    _tokens_key("{p}", now),
                    RATE_KEY_TTL_S,
                )
            ],
        )

    def result(self) -> SessionCounters:
        """Raises RedisError."""
        (reply,) = self._flight.result()
        if not reply:
            return SessionCounters(None)
        if len(reply) == 1:
            return SessionCounters(reply[0])
        raw, participant_id, study_id, gate, count, tokens = reply
        counters = _counters_from_replies(gate, count, tokens)
        return SessionCounters(raw, int(participant_id), int(study_id), counters)

    def discard(self) -> None:
        self._flight.discard()


def session_counters_begin(session_copy_key: str, now: dt.datetime) -> PendingSessionCounters:
    """PendingSessionCounters for the session whose Redis copy is at `session_copy_key`.
    Raises RedisError."""
    return PendingSessionCounters(session_copy_key, now)


def send_counters(participant: Participant, now: dt.datetime) -> SendCounters:
    """The participant gate's tokens and the send's limits in one Redis round trip instead of
    two (each a tenth of a millisecond or more, on every send). The minute's rate counter is
    counted here, before the gate and the message checks, so a send those refuse (withdrawn,
    consent due, an empty or too long message) counts towards the per-minute limit too.
    Raises RedisError. (The chat send reads them with its session: PendingSessionCounters;
    this is its way when the session was not in Redis.)"""
    from studyplatform.core.gate_epoch import gate_keys

    pipe = redis_sync().pipeline(transaction=False)
    pipe.execute_command("MGET", *gate_keys(participant.pk, participant.study_id))
    _queue_rate_and_tokens(pipe, participant.pk, now)
    gate, count, _, tokens = pipe.execute()
    return _counters_from_replies(gate, count, tokens)


def tokens_used_today(participant: Participant, now: dt.datetime) -> int:
    """Prompt + completion tokens of today's (UTC) replies, summed from the message log."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    totals = Message.objects.filter(
        participant=participant,
        created_at__gte=start,
        role=Message.Role.ASSISTANT,
        imported=False,
    ).aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    return (totals["p"] or 0) + (totals["c"] or 0)


def _tokens_today(participant: Participant, now: dt.datetime, cached: int | None) -> int:
    """Today's token use: Redis's counter (kept up by reply_finish) when it has one, else the
    SUM over the message log, which then seeds the counter. SET NX: a counter another send
    seeded meanwhile wins. A reply finishing between the SUM and the SET is missed by the
    counter (its INCR found no key); the budget is a soft daily cap, and the next day starts
    from a fresh SUM."""
    if cached is not None:
        return cached
    used = tokens_used_today(participant, now)
    redis_sync().set(_tokens_key(participant.pk, now), used, nx=True, ex=TOKENS_KEY_TTL_S)
    return used


def tokens_count(*, participant_id: int, day: dt.datetime, tokens: int) -> None:
    """Add a finished reply's tokens to its day's counter, if Redis has that counter."""
    if tokens <= 0:
        return
    try:
        redis_sync().eval(_INCR_IF_EXISTS, 1, _tokens_key(participant_id, day), tokens)
    except RedisError:
        # The counter is now low by this reply; drop it so the next send rebuilds it from
        # the log (which has this reply) instead of trusting it. If Redis is down, that
        # fails too and the send fails closed (the rate limiter needs Redis) until it is back.
        logger.warning("tokens counter of participant %s not updated", participant_id)
        with contextlib.suppress(RedisError):
            redis_sync().delete(_tokens_key(participant_id, day))


@dataclass(frozen=True)
class VoiceTurn:
    """A participant message that was spoken: its text is the transcript (screened and sent
    like typed text); these are the recording's measures (chat/voice.py)."""

    audio_ms: int | None
    stt_ms: int | None

    def message_fields(self) -> dict[str, Any]:
        return {"modality": "voice", "audio_ms": self.audio_ms, "stt_ms": self.stt_ms}


@dataclass
class SendResult:
    message: Message
    created: bool
    crisis: dict[str, Any] | None  # severity/category when the safety detector fired
    # The study's current protocol version as the statement that stored the message read it
    # (None: not read there; the survey hook reads it itself).
    study_version_id: int | None = None
    # The conversation's history as that statement read it (None: not read there), for
    # build_request.
    history: message_record.History | None = None


class StaleConversation(Exception):
    """The send was checked against a kept conversation row (send_load.send_cache) and cannot
    be decided on it: its fingerprint no longer matches, or the answer would be a refusal or
    would need the transaction (a safety alert to store with the message). Nothing was
    stored; the caller reads the conversation again and sends again on the fresh row."""


class ChatUnavailable(Exception):
    """A database or Redis outage stopped a send. `message` is the participant's message when it
    was committed before the failure (a retry with the same client request id then finds it and
    stores nothing new); None means nothing was written."""

    def __init__(self, *, message: Message | None):
        super().__init__("stored" if message is not None else "not stored")
        self.message = message


def message_send(
    *,
    participant: Participant,
    conversation: Conversation,
    text: str,
    client_request_id: str = "",
    tz_offset_minutes: int | None = None,
    now: dt.datetime | None = None,
    voice: VoiceTurn | None = None,
    counters: SendCounters | None = None,
    fingerprint: str | None = None,
) -> SendResult:
    """Store the participant's message (before any model call) and screen it for crisis language.

    The same `client_request_id` returns the already stored message, so a retried request never
    creates a second message or a second upstream call. A database or Redis outage raises
    ChatUnavailable, saying whether the message was stored. `counters`: the send's Redis reads
    when the caller took them already, with the gate's (send_counters). `fingerprint`: the
    conversation and its related objects are a kept row with this fingerprint
    (send_load.kept_conversation_for_send): the message is stored only by the statement that
    checks it, and anything else raises StaleConversation with nothing stored.
    """
    now = now or timezone.now()
    if conversation.participant_id != participant.pk:
        raise ChatError("not_found")
    text = (text or "").strip()
    try:
        stored = _message_store(
            participant=participant,
            conversation=conversation,
            text=text,
            client_request_id=client_request_id,
            tz_offset_minutes=tz_offset_minutes,
            now=now,
            voice=voice,
            counters=counters,
            fingerprint=fingerprint,
        )
    except (DatabaseError, RedisError) as exc:
        # Everything up to the commit failed or rolled back together: nothing is stored.
        raise ChatUnavailable(message=None) from exc
    if not stored.created:
        return stored
    try:
        # Surveys' "after N messages" rules (surveys imports chat, so chat cannot call it).
        publish(
            MessageStored(
                participant=participant,
                message=stored.message,
                current_version_id=stored.study_version_id,
            )
        )
    except (DatabaseError, RedisError) as exc:
        raise ChatUnavailable(message=stored.message) from exc
    return stored


def _stored_already(conversation: Conversation, client_request_id: str) -> Message | None:
    if not client_request_id:
        return None
    return Message.objects.filter(
        conversation=conversation, client_request_id=client_request_id[:64]
    ).first()


def _message_store(
    *,
    participant: Participant,
    conversation: Conversation,
    text: str,
    client_request_id: str,
    tz_offset_minutes: int | None,
    now: dt.datetime,
    voice: VoiceTurn | None = None,
    counters: SendCounters | None = None,
    fingerprint: str | None = None,
) -> SendResult:
    # Idempotency costs nothing on the common path: no look-up before the INSERT, whose unique
    # key (conversation, client_request_id) refuses a repeat; only a refusal looks the stored
    # message up. A refused send (limits, empty) checks for it too, so a network retry of a
    # message that was stored gets it back even if the limit was reached in between.
    study = participant.study
    try:
        if study.status == study.Status.CLOSED:
            raise ChatError("study_closed")
        limits = limits_for(participant)
        if not text:
            raise ChatError("empty")
        if len(text) > limits["max_message_chars"]:
            raise ChatError("too_long", str(limits["max_message_chars"]))
        # Fail closed: when Redis is down the limiter cannot count, and the send is refused
        # (the caller answers 503, "not stored, retry"). Failing open would let a runaway client
        # spend the study's model budget unmetered during the outage, and the reply could not
        # be streamed properly anyway (stop flags and stream tokens live in Redis too).
        # `counters`: read already with the gate's tokens (send_counters).
        if counters is not None:
            count, tokens = counters.count, counters.tokens
        else:
            count, tokens = _rate_and_tokens(participant, now)
        if count > limits["messages_per_minute"]:
            raise ChatError("rate_limited")
        if _tokens_today(participant, now, tokens) >= limits["tokens_per_day"]:
            raise ChatError("daily_tokens")
    except ChatError:
        if fingerprint is not None:
            raise StaleConversation from None  # a refusal is decided on a fresh read
        existing = _stored_already(conversation, client_request_id)
        if existing is not None:
            return SendResult(existing, False, None)
        raise
    message = Message(
        conversation=conversation,
        participant=participant,
        role=Message.Role.USER,
        content=text,
        status=Message.Status.PENDING,
        client_request_id=client_request_id[:64],
        created_at=now,
        received_at=now,
        arm=conversation.arm,
        protocol_version_id=study.current_version_id,
        tz_offset_minutes=tz_offset_minutes,
        **(voice.message_fields() if voice is not None else {}),
    )
    # No title from the message text: the first words often carry an email address, a phone
    # number or a name, and the conversation list shows titles in the clear. The list shows a
    # neutral dated title instead (chat/list.html).
    try:
        if message_record.one_statement_available() and safety_services.message_screen_quiet(
            participant=participant, text=text
        ):
            # The screen found nothing to write: the message alone, in one statement.
            try:
                record = message_record.insert_chained(
                    message, now=now, study_id=study.pk, fingerprint=fingerprint
                )
            except message_record.Withdrawn:
                raise ChatError("withdrawn") from None
            except message_record.Changed:
                raise StaleConversation from None
            version_id, history = record.version_id, record.history
            crisis = None
        elif fingerprint is not None:
            raise StaleConversation  # the alert's transaction checks no fingerprint
        else:
            version_id = history = None
            with transaction.atomic():
                _insert_chained_orm(message, now=now)
                crisis = safety_services.message_screen(
                    participant=participant, message=message, text=text, now=now
                )
    except IntegrityError:
        existing = _stored_already(conversation, client_request_id)
        if existing is None:
            raise
        # The same request id again (a retry, or two racing): the stored one, sent once.
        return SendResult(existing, False, None)
    return SendResult(message, True, crisis, version_id, history)


def _insert_chained_orm(message: Message, *, now: dt.datetime) -> None:
    """message_record.insert_chained in the caller's transaction, through the ORM (SQLite, or
    when the safety screen must write with the message)."""
    # Lock the conversation and read its current leaf: two quick sends must chain, not both
    # hang off the same parent. The participant's status is checked in the same statement, in
    # the same transaction as the INSERT: a withdrawal committed before this point can never
    # be followed by a stored message, whatever a page or session cached.
    locked = (
        Conversation.objects.select_for_update(of=("self",))
        .filter(pk=message.conversation_id)
        .exclude(participant__status=Participant.Status.WITHDRAWN)
        .values_list("pk", "active_leaf_id")
        .first()
    )
    if locked is None:
        raise ChatError("withdrawn")
    message.parent_id = locked[1]
    message.save(force_insert=True)
    Conversation.objects.filter(pk=message.conversation_id).update(
        active_leaf=message, updated_at=now
    )


def conversation_view(*, conversation, actor, study_slug: str) -> None:
    """Record that `actor` read a conversation's message content."""
    audit_record(
        actor=actor,
        action="chat.read",
        target=conversation,
        study_slug=study_slug,
        data={"participant": conversation.participant.code},
    )


def memory_text(participant: Participant) -> str:
    note = MemoryNote.objects.filter(participant=participant).first()
    return note.text if note else ""


def memory_save(*, participant: Participant, text: str) -> MemoryNote:
    note, _ = MemoryNote.objects.get_or_create(participant=participant)
    note.text = text.strip()[:4000]
    note.save()
    return note


def branch_path(leaf: Message | None) -> list[Message]:
    """Messages from the root down to `leaf` (the branch the participant sees)."""
    if leaf is None:
        return []
    by_id = {
        m.pk: m
        for m in Message.objects.filter(conversation_id=leaf.conversation_id).only(
            "id", "parent_id", "role", "content", "status", "created_at", "imported"
        )
    }
    path, node = [], by_id.get(leaf.pk)
    while node is not None:
        path.append(node)
        node = by_id.get(node.parent_id)
    return path[::-1]


def arm_endpoint(arm) -> Endpoint:
    """The registered endpoint this arm's calls go to, checked now: registration can change while
    a study runs. Raises EndpointUnavailable (its text is safe to show a researcher)."""
    endpoint = endpoint_resolve(name=arm.endpoint, model=arm.model_name)
    if endpoint.kind != arm.provider:
        # The participant UI labels an arm simulated (or not) by the kind saved with it.
        raise EndpointUnavailable(
            f"endpoint {arm.endpoint!r} changed kind since arm {arm.key} was saved"
        )
    return endpoint


def arm_target(arm) -> Endpoint | EndpointUnavailable:
    """arm_endpoint, with the refusal returned rather than raised (for the reply stream, which
    records it as a failed reply)."""
    try:
        return arm_endpoint(arm)
    except EndpointUnavailable as exc:
        logger.warning("chat call for arm %s refused: %s", arm.pk, exc)
        return exc


def _branch_sql(conn) -> str:
    """The SQL of _branch_and_memory, from the models' meta (table and column names quoted;
    the two ids are parameters). Written by hand rather than through the ORM: the ORM compiled
    the same query again on every send (~0.6 ms of CPU), and nothing in it needs a converter
    (ids, a role, and two columns wanted as stored, still encrypted)."""
    quote = conn.ops.quote_name

    def column(model, name):
        return message_record.column(conn, model, name)

    return (
        f"SELECT m.id, m.{column(Message, 'parent')}, m.{column(Message, 'role')}, "  # noqa: S608
        f"m.{column(Message, 'content')}, ({message_record.memory_subquery(conn)}), "
        f"c.{column(Conversation, 'task_text')} "
        f"FROM {quote(Message._meta.db_table)} m JOIN {quote(Conversation._meta.db_table)} c "
        f"ON c.id = m.{column(Message, 'conversation')} "
        f"WHERE m.{column(Message, 'conversation')} = %s"
    )


_BRANCH_SQL: dict[str, str] = {}

_history_texts: DecryptedTexts | None = None


def history_texts() -> DecryptedTexts:
    """This process's decrypted conversation texts for model requests (core.fields
    .DecryptedTexts): every send's request carries the conversation's history, and decrypting
    all of it again grew with the conversation (~10 us a message warm; a reply of 60 turns was
    0.6 ms of every send). Sized by CHAT_HISTORY_CACHE_MCHARS and CHAT_HISTORY_CACHE_IDLE_S."""
    global _history_texts
    limit = settings.CHAT_HISTORY_CACHE_MCHARS * 1_000_000
    idle = settings.CHAT_HISTORY_CACHE_IDLE_S
    texts = _history_texts
    if texts is None or texts.max_chars != limit or texts.max_age_s != idle:
        texts = _history_texts = DecryptedTexts(max_chars=limit, max_age_s=idle)
    return texts


def _branch_and_memory(
    user_message: Message, participant_id: int, history: message_record.History | None = None
) -> tuple[list[tuple[str, str | None]], str, str]:
    """The active branch up to `user_message` as (role, still-encrypted content) pairs, root
    first, with memory_text() and the conversation's task text, in one query (two round trips
    were a tenth of the work before the model call): the memory note rides along on every row
    as a scalar subquery. Plain tuples, not Message instances, and nothing decrypted here: a
    conversation's every message (other branches, turns beyond the context budget) was
    decrypted and built into a model instance on every send; build_request decrypts only the
    turns it sends.

    `history`: the same rows as the statement that stored the message read them. Used unless
    its branch does not reach the conversation's first message: a send to the same
    conversation committed while that statement waited for the conversation's lock is the new
    message's parent but not in the statement's snapshot; the rows are then read again."""
    if history is not None:
        path, whole = _branch_path(history.rows, user_message.pk)
        if whole:
            memory = history_texts().decrypt(history.memory_token) if history.memory_token else ""
            return path, memory, history.task or ""
    sql = _BRANCH_SQL.get(connection.vendor)
    if sql is None:
        sql = _BRANCH_SQL[connection.vendor] = _branch_sql(connection)
    with prepared_cursor() as cursor:
        cursor.execute(sql, [participant_id, user_message.conversation_id])
        rows = cursor.fetchall()
    if not rows:  # the message itself is gone (a withdrawal with deletion raced the send)
        return [], "", ""
    memory_token, task = rows[0][4], rows[0][5]
    path, _ = _branch_path(rows, user_message.pk)
    return path, history_texts().decrypt(memory_token) if memory_token else "", task or ""


def _branch_path(rows, leaf_id: int) -> tuple[list[tuple[str, str | None]], bool]:
    """(role, content) down to `leaf_id`, root first, from rows of (id, parent id, role,
    content, ...), and whether that reached the conversation's first message (False when the
    chain breaks off at a parent the rows do not have, or the leaf is not among them)."""
    by_id = {row[0]: row for row in rows}
    path, node = [], by_id.get(leaf_id)
    while node is not None:
        path.append((node[2], node[3]))
        if node[1] is None:
            return path[::-1], True
        node = by_id.get(node[1])
    return path[::-1], False


def build_request(
    *,
    user_message: Message,
    arm,
    participant: Participant,
    history: message_record.History | None = None,
) -> ChatRequest:
    """The model request: pinned model, system prompt + the daily task the conversation was
    opened from (if it was) + memory notes, the active branch up to this message, truncated
    oldest-first to the model's context budget. `history`: the conversation as the statement
    that stored the message read it (SendResult.history), saving a query."""
    system = arm.system_prompt.strip()
    branch, memory, task = _branch_and_memory(user_message, participant.pk, history)
    if task:
        # The participant opened this conversation from the day's task card and saw the task
        # as the conversation's first note; the model gets it as context, not as a message the
        # participant wrote.
        system = (
            (system + "\n\n" if system else "")
            + "The user started this conversation from today's conversation task, which they "
            + "were shown:\n"
            + task
        )
    if memory:
        system = (
            (system + "\n\n" if system else "")
            + "Notes from the user about themselves:\n"
            + (memory)
        )
    turns = [
        (role, token)
        for role, token in branch
        if role in (Message.Role.USER, Message.Role.ASSISTANT) and token
    ]
    params = dict(arm.parameters)
    reserve = int(params.get("max_tokens", DEFAULT_REPLY_RESERVE))
    budget = max(256, arm.context_tokens - reserve - estimate_tokens(system))
    kept: list[dict] = []
    used = 0
    texts = history_texts()
    # Newest first, decrypting each turn only when it is reached (or taking the text this
    # process decrypted for an earlier send).
    for role, token in reversed(turns):
        content = texts.decrypt(token)
        if not content:
            continue
        cost = estimate_tokens(content) + 4
        if kept and used + cost > budget:
            break  # oldest messages go first; the newest user message is always sent
        kept.append({"role": role, "content": content})
        used += cost
    return ChatRequest(
        model=arm.model_name,
        messages=kept[::-1],
        system=system or None,
        params=params,
        timeout=Timeouts(
            connect=settings.LLM_CONNECT_TIMEOUT_S,
            read=settings.LLM_READ_TIMEOUT_S,
            total_deadline_before_first_token=settings.LLM_FIRST_TOKEN_DEADLINE_S,
        ),
    )


FINISH_TO_STATUS = {
    "stop": Message.Status.COMPLETE,
    "tool_calls": Message.Status.COMPLETE,
    "length": Message.Status.LENGTH,
    "content_filter": Message.Status.FILTERED,
}


def _latency_ms(user_message: Message, first_token_at) -> int:
    return max(0, int((first_token_at - user_message.received_at).total_seconds() * 1000))


def reply_start(
    *, user_message: Message, arm, first_token_at, upstream_sent_at, text: str = ""
) -> Message:
    """Create the assistant message while it streams (at its first checkpoint), holding the
    text so far."""
    return Message.objects.create(
        conversation_id=user_message.conversation_id,
        participant_id=user_message.participant_id,
        parent=user_message,
        role=Message.Role.ASSISTANT,
        content=text,
        status=Message.Status.STREAMING,
        created_at=first_token_at,
        upstream_sent_at=upstream_sent_at,
        first_token_at=first_token_at,
        checkpoint_at=timezone.now(),
        latency_ms=_latency_ms(user_message, first_token_at),
        arm=arm,
        protocol_version_id=user_message.protocol_version_id,
        model_requested=arm.model_name,
    )


def reply_finish(
    *,
    reply: Message | None,
    user_message: Message,
    arm,
    text: str,
    end: StreamEnd | None,
    status: str,
    upstream_sent_at,
    first_token_at=None,
    error_code: str = "",
    attempts: int = 1,
    retrying: bool = False,
) -> Message:
    """Finalise the reply (creating it if it ended before its first checkpoint, or before any
    token), mark the participant's message answered and make the reply the conversation's
    active leaf, all at once (reply_record.write_final: one statement on PostgreSQL, one
    transaction elsewhere), so the log never shows a finished reply the conversation does not
    point to.

    `retrying`: an earlier call for this reply failed. If that call's write did commit (only
    its answer was lost), the row it created is finished again rather than a second one
    created: a reply is recorded once.
    """
    from .reply_record import write_final  # here, not at the top: keeps the import list stable

    now = timezone.now()
    if reply is None and retrying:
        reply = Message.objects.filter(
            parent=user_message, role=Message.Role.ASSISTANT, upstream_sent_at=upstream_sent_at
        ).first()
    if reply is None:
        reply = Message(
            conversation_id=user_message.conversation_id,
            participant_id=user_message.participant_id,
            parent=user_message,
            role=Message.Role.ASSISTANT,
            created_at=first_token_at or now,
            upstream_sent_at=upstream_sent_at,
            arm=arm,
            protocol_version_id=user_message.protocol_version_id,
            model_requested=arm.model_name,
        )
        if first_token_at is not None:
            reply.first_token_at = first_token_at
            reply.latency_ms = _latency_ms(user_message, first_token_at)
    reply.content = text
    reply.status = status
    reply.completed_at = now
    reply.error_code = error_code[:40]
    reply.attempts = attempts
    if end is not None:
        reply.model_reported = end.model_reported or ""
        reply.system_fingerprint = end.system_fingerprint or ""
        reply.provider_response_id = end.response_id or ""
        reply.finish_reason = end.finish_reason or ""
        reply.prompt_tokens = end.prompt_tokens
        reply.completion_tokens = end.completion_tokens
        reply.tokens_estimated = end.usage_estimated
    else:
        # The stream broke: no usage arrived, so estimate and flag it.
        reply.finish_reason = status
        reply.completion_tokens = estimate_tokens(text) if text else 0
        reply.tokens_estimated = True
    write_final(reply, user_message=user_message, now=now)
    # After the write, so a failed (and retried) write is counted once. If every attempt
    # fails, the reply's tokens go uncounted (the counter errs lenient by one reply).
    tokens_count(
        participant_id=user_message.participant_id,
        day=reply.created_at,
        tokens=(reply.prompt_tokens or 0) + (reply.completion_tokens or 0),
    )
    return reply


def reply_checkpoint(reply: Message, text: str) -> None:
    """Save partial text while streaming, so a killed process loses at most a few seconds."""
    reply.content = text
    reply.checkpoint_at = timezone.now()
    reply.save(update_fields=["content", "checkpoint_at"])


def stale_replies_finish(*, now=None, limit: int = 500) -> int:
    """Finalise replies left `streaming` by a process that could not record how they ended
    (the database was down at finalise time, or the process was killed): a reply whose last
    checkpoint is older than STALE_REPLY_AFTER_S becomes `error` / `internal_interrupted`,
    keeping the partial text it had saved. Returns how many were finalised.

    Each reply is locked and re-checked before it is changed, so a stream that finishes at the
    same moment wins and is never overwritten. The conversation's active leaf is left alone:
    the participant may have retried since, and the retry's reply must stay the one shown."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.STALE_REPLY_AFTER_S)
    stale = Q(status=Message.Status.STREAMING, role=Message.Role.ASSISTANT) & (
        Q(checkpoint_at__lt=cutoff)
        # Rows written before checkpoint_at existed: their first token is the last known time.
        | Q(checkpoint_at__isnull=True, created_at__lt=cutoff)
    )
    ids = list(Message.objects.filter(stale).order_by("pk").values_list("pk", flat=True)[:limit])
    finished = 0
    for pk in ids:
        with transaction.atomic():
            reply = Message.objects.select_for_update().filter(stale, pk=pk).first()
            if reply is None:
                continue  # finished by its stream in the meantime
            reply.status = Message.Status.ERROR
            reply.error_code = ReplyCode.INTERNAL_INTERRUPTED
            reply.completed_at = now
            reply.finish_reason = Message.Status.ERROR
            reply.completion_tokens = estimate_tokens(reply.content) if reply.content else 0
            reply.tokens_estimated = True
            reply.save(
                update_fields=[
                    "status",
                    "error_code",
                    "completed_at",
                    "finish_reason",
                    "completion_tokens",
                    "tokens_estimated",
                ]
            )
            # Its question was answered (by a failed attempt), as reply_finish would record.
            Message.objects.filter(pk=reply.parent_id, status=Message.Status.PENDING).update(
                status=Message.Status.COMPLETE
            )
            finished += 1
    if finished:
        logger.warning("stale-reply sweep finalised %d abandoned streaming replies", finished)
    return finished
