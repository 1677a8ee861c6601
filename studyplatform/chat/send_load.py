"""The chat send's first read: the session participant's conversation with its arm, the
participant, their study and its current protocol version, in one statement whose SQL is built
once per process.

The same read through the ORM (`select_related` over five models) cost ~1.7 ms of CPU on every
send, ~1 ms of it compiling the same SQL again and the rest in generic row handling, against
~0.1 ms for executing it (measured in the chat profile, issue 19). Here the SQL is written from
the models' meta (every concrete column, quoted), each column keeps the converters Django would
apply to it (the backend's, then the field's: datetimes on SQLite, JSON, encrypted text), and
the rows become model instances through Model.from_db, with the related objects cached as
select_related caches them. A column added to one of these models is therefore read without
any change here.

On PostgreSQL the read's row is also kept in this process, by conversation id, with a
fingerprint of everything in it that a send's checks depend on (send_cache below): the next
send of that conversation builds its objects from the kept row instead of reading it again,
and the statement that stores its message (message_record.insert_chained) stores it only if
the fingerprint of the rows as they are then is still the same. So a kept row can never let
anything be stored on data that has changed since; a changed fingerprint stores nothing and
the send starts again from a fresh read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.db import connection, models

from studyplatform.core.fields import EncryptedTextField
from studyplatform.core.prepared import prepared_cursor
from studyplatform.participants.models import Participant
from studyplatform.studies.models import Arm, ProtocolVersion, Study

from .models import Conversation

# (model, table alias, the relation joined to reach it: (alias, FK field name) or None)
_TABLES = (
    (Conversation, "c", None),
    (Arm, "a", ("c", "arm")),
    (Participant, "p", ("c", "participant")),
    (Study, "s", ("p", "study")),
    (ProtocolVersion, "v", ("s", "current_version")),
)


@dataclass(frozen=True)
class _Block:
    model: type
    start: int
    attnames: tuple[str, ...]
    # (offset in block, ((converter, expression), ...)), in two groups: columns whose Python
    # values are immutable (text, numbers, datetimes; a decrypted title), converted once when
    # a row is kept, and the rest (JSON: dicts and lists a request may change), converted for
    # every send's own instances.
    converters_once: tuple[tuple[int, tuple], ...]
    converters_each: tuple[tuple[int, tuple], ...]
    optional: bool  # reached through a nullable FK (LEFT JOIN): no row means None


# The conversation columns a send changes itself (its new leaf, and when): left out of the
# fingerprint, or every send would find the row changed by the one before it.
_SEND_WRITES = ("active_leaf_id", "updated_at")


def joins(conn) -> str:
    """FROM the conversation JOIN the rest (aliases as in _TABLES): the read's and, with the
    fingerprint, message_record's storing statement's."""
    quote = conn.ops.quote_name
    models = {alias: model for model, alias, _ in _TABLES}
    joins = []
    for model, alias, via in _TABLES:
        table = quote(model._meta.db_table)
        if via is None:
            joins.append(f"FROM {table} {alias}")
            continue
        source, name = via
        fk = models[source]._meta.get_field(name)
        kind = "LEFT JOIN" if fk.null else "JOIN"
        pk = quote(model._meta.pk.column)
        joins.append(f"{kind} {table} {alias} ON {alias}.{pk} = {source}.{quote(fk.column)}")
    return " ".join(joins)


def fingerprint_sql(conn) -> str:
    """An md5 over the rows the send's checks read (PostgreSQL): every column of the arm, the
    participant and the study, the conversation's but the two a send writes, and the protocol
    version's id and content hash (a version is immutable). The same expression in the read
    and in the storing statement, on connections with the same settings (Django's: UTC), gives
    the same text for the same values."""
    quote = conn.ops.quote_name
    parts = []
    for model, alias, _ in _TABLES:
        if model is ProtocolVersion:
            names = ("id", "content_hash")
        else:
            names = tuple(
                f.attname
                for f in model._meta.concrete_fields
                if not (model is Conversation and f.attname in _SEND_WRITES)
            )
        columns = [f"{alias}.{quote(model._meta.get_field(n).column)}" for n in names]
        parts.append(f"ROW({', '.join(columns)})::text")
    return f"md5({' || '.join(parts)})"


def _build(conn) -> tuple[str, tuple[_Block, ...]]:
    quote = conn.ops.quote_name
    columns, blocks = [], []
    for model, alias, via in _TABLES:
        fields = model._meta.concrete_fields
        once, each = [], []
        for offset, field in enumerate(fields):
            col = field.get_col(alias)
            found = [*conn.ops.get_db_converters(col), *col.get_db_converters(conn)]
            if found:
                group = once if _immutable_values(field) else each
                group.append((offset, tuple((c, col) for c in found)))
            columns.append(f"{alias}.{quote(field.column)}")
        optional = via is not None and _fk(via).null
        blocks.append(
            _Block(
                model,
                len(columns) - len(fields),
                tuple(f.attname for f in fields),
                tuple(once),
                tuple(each),
                optional,
            )
        )
    if send_cache_available(conn):
        columns.append(fingerprint_sql(conn))  # the row's last value
    # Only table and column names from the models' meta are formatted in; values are params.
    sql = f"SELECT {', '.join(columns)} {joins(conn)} WHERE c.id = %s"
    return sql, tuple(blocks)


def _immutable_values(field) -> bool:
    """Whether the field's Python values are immutable, so that a kept row may hold them
    converted: encrypted text (a str; decrypting the conversation's title was ~20 us of every
    kept send, more on a cold CPU) and Django's own scalar fields. JSON (and any field not
    known here) is converted for each send, whose instances may be changed by its request."""
    if isinstance(field, EncryptedTextField):
        return True
    return type(field).__module__ == "django.db.models.fields" and not isinstance(
        field, models.BinaryField
    )


def _fk(via: tuple[str, str]):
    source, name = via
    model = next(m for m, alias, _ in _TABLES if alias == source)
    return model._meta.get_field(name)


_built: dict[str, tuple[str, tuple[_Block, ...]]] = {}


def send_cache_available(conn=connection) -> bool:
    """Whether sends keep the read's row (PostgreSQL: the fingerprint is checked by the storing
    statement there; elsewhere every send reads the conversation)."""
    return conn.vendor == "postgresql"


class _SendCache:
    """Conversation id -> (the read's row, its fingerprint), for this process; at most MAX
    rows, the oldest dropped first. The row holds only immutable values (numbers, strings,
    datetimes, None; encrypted text decrypted, JSON still text), and every send builds its own
    model instances from it, so no request can change what another one gets."""

    MAX = 4096  # a row is ~2-3 KB besides its protocol version's columns, which rows share

    def __init__(self) -> None:
        self._rows: dict[int, tuple[tuple, str]] = {}
        self._lock = threading.Lock()  # sync views run in more than one thread

    def get(self, conversation_id: int) -> tuple[tuple, str] | None:
        return self._rows.get(conversation_id)

    def put(self, conversation_id: int, row: tuple, fingerprint: str) -> None:
        with self._lock:
            self._rows.pop(conversation_id, None)
            while len(self._rows) >= self.MAX:
                del self._rows[next(iter(self._rows))]
            self._rows[conversation_id] = (row, fingerprint)

    def forget(self, conversation_id: int) -> None:
        with self._lock:
            self._rows.pop(conversation_id, None)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


send_cache = _SendCache()


def _statement_and_blocks() -> tuple[str, tuple[_Block, ...]]:
    built = _built.get(connection.vendor)
    if built is None:
        built = _built[connection.vendor] = _build(connection)
    return built


def conversation_for_send(conversation_id: int, participant_id: int | None) -> Conversation | None:
    """The participant's conversation (None if it is not theirs), with .arm, .participant,
    .participant.study and its .current_version loaded.

    participant_id None: the conversation whoever's it is, for a caller that reads it before it
    knows the session's participant and then compares conversation.participant_id itself (the
    chat send, whose session is read from Redis at the same time). The row is kept for the
    next send (send_cache) where that is available."""
    sql, blocks = _statement_and_blocks()
    params = [conversation_id]
    if participant_id is not None:
        sql += " AND c.participant_id = %s"
        params.append(participant_id)
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        if participant_id is None:
            send_cache.forget(conversation_id)  # gone (someone else's is no reason to forget)
        return None
    row = _converted_once(row, blocks)
    if send_cache_available():
        send_cache.put(conversation_id, _sharing_the_version(row, blocks[-1]), row[-1])
    return _objects(row, blocks)


# Protocol version id -> that version's columns as read: rows kept for conversations of the same
# version share one copy of its document (~10 KB each; a version is immutable).
_versions: dict[int, tuple] = {}
_VERSIONS_MAX = 256


def _sharing_the_version(row: tuple, block: _Block) -> tuple:
    end = block.start + len(block.attnames)
    columns = row[block.start : end]
    version_id = columns[block.attnames.index("id")]
    if version_id is None:
        return row
    shared = _versions.get(version_id)
    if shared != columns:  # not seen yet (or, impossibly, changed: the new one is kept)
        if len(_versions) >= _VERSIONS_MAX:
            _versions.clear()
        _versions[version_id] = shared = columns
    return row[: block.start] + shared + row[end:]


def kept_conversation_for_send(conversation_id: int) -> tuple[Conversation, str] | None:
    """The conversation as conversation_for_send last read it in this process, and that row's
    fingerprint (None when no row is kept): whoever's it is, and possibly out of date. Only a
    statement that checks the fingerprint may store anything on it."""
    if not send_cache_available():
        return None
    kept = send_cache.get(conversation_id)
    if kept is None:
        return None
    row, fingerprint = kept
    return _objects(row, _statement_and_blocks()[1]), fingerprint


def _converted_once(row: tuple, blocks: tuple[_Block, ...]) -> tuple:
    """The read's row with its immutable values converted (_Block.converters_once): what a
    kept row holds, and what _objects takes."""
    values = list(row)
    for block in blocks:
        for offset, chain in block.converters_once:
            at = block.start + offset
            for converter, expression in chain:
                values[at] = converter(values[at], expression, connection)
    return tuple(values)


def _objects(row: tuple, blocks: tuple[_Block, ...]) -> Conversation:
    """New model instances from a row of the read (its immutable values already converted,
    _converted_once), related as select_related relates them."""
    objects = []
    for block in blocks:
        values = list(row[block.start : block.start + len(block.attnames)])
        for offset, chain in block.converters_each:
            for converter, expression in chain:
                values[offset] = converter(values[offset], expression, connection)
        if block.optional and values[block.attnames.index(block.model._meta.pk.attname)] is None:
            objects.append(None)  # the LEFT JOIN found no row (a study without a version)
            continue
        objects.append(block.model.from_db(connection.alias, block.attnames, values))
    conversation, arm, participant, study, version = objects
    Study._meta.get_field("current_version").set_cached_value(study, version)
    Participant._meta.get_field("study").set_cached_value(participant, study)
    Conversation._meta.get_field("participant").set_cached_value(conversation, participant)
    Conversation._meta.get_field("arm").set_cached_value(conversation, arm)
    return conversation
