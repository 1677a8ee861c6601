"""A participant's message in the database, chained under the conversation's current leaf.

On PostgreSQL, when nothing else has to be written with it (the safety screen raised nothing
and no moderation is queued), that is one statement: lock the conversation row if its
participant has not withdrawn, insert the message under the leaf it read, point the
conversation at the new message. The transaction it replaces (BEGIN, SELECT ... FOR UPDATE,
INSERT, UPDATE, COMMIT) was five round trips and two ORM compilations on every chat send.
Elsewhere, or when an alert or a moderation task must commit with the message, the caller uses
the ORM in a transaction (services._message_store). The same statement also returns the
conversation's messages, memory note and task text, which the model request needs
(services.build_request): the read that followed it was a round trip of its own, ~0.3 ms of
the send in-process and ~0.5 ms in the served benchmark at 5 messages/s.

The guarantees are the transaction's: FOR UPDATE makes two quick sends chain (the second waits
for the first and, under READ COMMITTED, re-reads the locked row and its new leaf); the
participant's status is read in the same statement as the INSERT, so a withdrawal committed
before it can never be followed by a stored message; the unique (conversation,
client_request_id) key still refuses a repeat with an IntegrityError, and a statement that
fails writes nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from django.db import connection, transaction

from studyplatform.core.prepared import prepared_cursor
from studyplatform.participants.models import Participant

from . import send_load
from .models import Conversation, MemoryNote, Message


class Withdrawn(Exception):
    """The conversation's participant has withdrawn (or the conversation is gone)."""


class Changed(Exception):
    """Nothing was stored: the rows a send was checked against are no longer those with the
    fingerprint it gave (or the participant withdrew, or the conversation is gone). The send
    starts again from a fresh read, which tells which."""


def one_statement_available() -> bool:
    return connection.vendor == "postgresql"


_statements: dict[tuple[str, bool], tuple[str, list]] = {}


def _statement(checked: bool) -> tuple[str, list]:
    """The statement's SQL and the fields whose values it takes, in order; built once per
    database vendor from the models' meta (building it was ~0.5 ms of every send).

    `checked`: the variant that also takes a fingerprint of the rows the send was checked
    against (send_load.fingerprint_sql) and stores nothing when they are not the same now."""
    cached = _statements.get((connection.vendor, checked))
    if cached is not None:
        return cached
    quote = connection.ops.quote_name

    def col(model, name: str) -> str:
        return column(connection, model, name)

    message_table = quote(Message._meta.db_table)
    conversation_table = quote(Conversation._meta.db_table)
    participant_table = quote(Participant._meta.db_table)
    study_field = Participant._meta.get_field("study")
    study_table = quote(study_field.related_model._meta.db_table)
    version_column = quote(study_field.related_model._meta.get_field("current_version").column)
    columns, values, fields = [], [], []
    for field in Message._meta.local_concrete_fields:
        if field.primary_key:
            continue
        columns.append(quote(field.column))
        if field.attname == "parent_id":
            values.append("locked.active_leaf_id")
            continue
        # The cast types the parameter, which a SELECT list would otherwise read as text.
        fields.append(field)
        values.append(f"CAST(%s AS {field.cast_db_type(connection)})")
    # Only table and column names (from the models' meta, quoted) and column types are
    # formatted into the SQL; every value is a parameter.
    condition = ""
    if checked:
        # A subquery of its own, computed once from the statement's snapshot (the same
        # condition inside the locked join measured the same). Its parameters: the
        # conversation id, then the fingerprint.
        condition = (
            f"AND (SELECT {send_load.fingerprint_sql(connection)} "
            f"{send_load.joins(connection)} WHERE c.id = %s) = %s "
        )
    sql = (
        f"WITH locked AS (SELECT c.id, c.active_leaf_id FROM {conversation_table} c "  # noqa: S608
        f"JOIN {participant_table} p ON p.id = c.participant_id "
        f"WHERE c.id = %s AND p.status <> %s {condition}FOR UPDATE OF c), "
        f"msg AS (INSERT INTO {message_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM locked RETURNING id, parent_id), "
        f"leaf AS (UPDATE {conversation_table} SET active_leaf_id = msg.id, updated_at = %s "
        f"FROM msg WHERE {conversation_table}.id = %s) "
        # The stored row (kind 0) with the study's version, the memory note and the task text,
        # then the conversation's earlier messages (kind 1) for the model request's history:
        # the same reads build_request would make in a second round trip.
        f"SELECT 0, id, parent_id, (SELECT {version_column} FROM {study_table} WHERE id = %s), "
        f"NULL, NULL, ({memory_subquery(connection)}), "
        f"(SELECT {col(Conversation, 'task_text')} FROM {conversation_table} WHERE id = %s) "
        "FROM msg UNION ALL "
        f"SELECT 1, m.id, m.{col(Message, 'parent')}, NULL, m.{col(Message, 'role')}, "
        f"m.{col(Message, 'content')}, NULL, NULL FROM {message_table} m "
        f"WHERE m.{col(Message, 'conversation')} = %s AND EXISTS (SELECT 1 FROM msg)"
    )
    _statements[(connection.vendor, checked)] = (sql, fields)
    return sql, fields


def column(conn, model, name: str) -> str:
    """The quoted column of `model`'s field `name` on the connection `conn`."""
    return conn.ops.quote_name(model._meta.get_field(name).column)


def memory_subquery(conn) -> str:
    """A scalar subquery for the participant's memory note (still encrypted; the participant
    id is its one parameter): this statement's and services._branch_sql's."""
    table = conn.ops.quote_name(MemoryNote._meta.db_table)
    return (
        f"SELECT n.{column(conn, MemoryNote, 'text')} FROM {table} n "  # noqa: S608
        f"WHERE n.{column(conn, MemoryNote, 'participant')} = %s LIMIT 1"
    )


@dataclass(frozen=True)
class History:
    """What the model request needs besides the message, as the storing statement read it:
    the conversation's messages as (id, parent id, role, still-encrypted content) rows, the
    new message among them, and the memory note (encrypted) and task text."""

    rows: list[tuple]
    memory_token: str | None
    task: str | None


@dataclass(frozen=True)
class Stored:
    version_id: int | None  # the study's current protocol version (None without a study id)
    history: History


def insert_chained(
    message: Message, *, now, study_id: int | None = None, fingerprint: str | None = None
) -> Stored:
    """INSERT `message` (unsaved; its parent is taken from the conversation), set it as the
    conversation's leaf, in one statement. Sets message.pk and message.parent_id; raises
    Withdrawn when the participant has withdrawn, IntegrityError on a repeated request id.

    `fingerprint`: the send's checks ran on a kept row with this fingerprint
    (send_load.kept_conversation_for_send); the statement stores the message only if the rows
    still have it, and raises Changed when it stored nothing.

    Returns the current protocol version of study `study_id` as the same statement read it
    (None without a study_id): the survey rules that follow a message need the study's
    current version, and a study object loaded earlier may predate a protocol change. And the
    conversation's history as the statement read it, for the model request."""
    sql, fields = _statement(fingerprint is not None)
    # Prepared exactly as Model.save() prepares them (the content is encrypted by its field).
    values = [f.get_db_prep_save(f.pre_save(message, True), connection) for f in fields]
    content_token = next(v for f, v in zip(fields, values, strict=True) if f.name == "content")
    params: list = [message.conversation_id, Participant.Status.WITHDRAWN]
    if fingerprint is not None:
        params += [message.conversation_id, fingerprint]
    params += values
    params += [now, message.conversation_id, study_id, message.participant_id]
    params += [message.conversation_id, message.conversation_id]
    # Alone the statement is atomic; inside a caller's transaction (tests) a savepoint keeps
    # its failure (a repeated request id) from aborting that whole transaction.
    nested = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with nested, prepared_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    stored = next((row for row in rows if row[0] == 0), None)
    if stored is None:
        raise Withdrawn if fingerprint is None else Changed
    _, message.pk, message.parent_id, version_id, _, _, memory_token, task = stored
    message._state.adding = False
    message._state.db = connection.alias
    # The statement's snapshot predates its own INSERT: the new message joins the history here.
    history = [(row[1], row[2], row[4], row[5]) for row in rows if row[0] == 1]
    history.append((message.pk, message.parent_id, message.role, content_token))
    return Stored(version_id, History(history, memory_token, task))
