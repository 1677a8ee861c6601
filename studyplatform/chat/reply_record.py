"""The end of a reply in the database: the reply row, its question no longer pending, the
conversation pointing at it. On PostgreSQL that is one statement (data-modifying CTEs, atomic
by themselves), not a transaction of three: BEGIN, INSERT or UPDATE, two UPDATEs and COMMIT
were five round trips and ~1 ms of ORM work at the end of every reply. SQLite has no
data-modifying CTEs, so it keeps the three statements in one transaction.

The reply row's own INSERT or UPDATE is built once from the models' meta, and every value is
prepared exactly as Model.save() prepares it (the content is encrypted by its field).
"""

from __future__ import annotations

import contextlib

from django.db import connection, transaction

from studyplatform.core.prepared import prepared_cursor

from .models import Conversation, Message

# Everything reply_finish sets on a reply that already has a row (written at its checkpoint).
FINAL_FIELDS = (
    "content",
    "status",
    "completed_at",
    "error_code",
    "attempts",
    "model_reported",
    "system_fingerprint",
    "provider_response_id",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "tokens_estimated",
)


_templates: dict[tuple[str, bool], tuple[str, list]] = {}


def _reply_template(adding: bool) -> tuple[str, list]:
    """The INSERT (all columns but the id) or the UPDATE (FINAL_FIELDS, by id) of a reply row,
    returning its id, and the fields whose values it takes in order; built once per database
    vendor from the models' meta (compiling it through the ORM was ~0.5 ms of every reply)."""
    key = (connection.vendor, adding)
    cached = _templates.get(key)
    if cached is not None:
        return cached
    quote = connection.ops.quote_name
    table, pk = quote(Message._meta.db_table), quote(Message._meta.pk.column)
    if adding:
        fields = [f for f in Message._meta.local_concrete_fields if not f.primary_key]
        columns = ", ".join(quote(f.column) for f in fields)
        marks = ", ".join(["%s"] * len(fields))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING {pk}"  # noqa: S608
    else:
        fields = [Message._meta.get_field(name) for name in FINAL_FIELDS]
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
        sql = f"UPDATE {table} SET {assignments} WHERE {pk} = %s RETURNING {pk}"  # noqa: S608
    _templates[key] = (sql, fields)
    return sql, fields


def _reply_sql(reply: Message) -> tuple[str, list]:
    """The INSERT (returning its id) or UPDATE of the reply row, with every value prepared as
    Model.save() prepares it (the content is encrypted by its field)."""
    adding = reply._state.adding
    sql, fields = _reply_template(adding)
    if adding:
        return sql, [f.get_db_prep_save(f.pre_save(reply, True), connection) for f in fields]
    params = [f.get_db_prep_save(getattr(reply, f.attname), connection) for f in fields]
    return sql, [*params, reply.pk]


def write_final(reply: Message, *, user_message: Message, now) -> None:
    """Write the finished reply, mark its question answered, make it the active leaf."""
    if connection.vendor != "postgresql":
        _write_final_orm(reply, user_message=user_message, now=now)
        return
    quote = connection.ops.quote_name
    message_table, conversation_table = (
        quote(Message._meta.db_table),
        quote(Conversation._meta.db_table),
    )
    reply_sql, params = _reply_sql(reply)
    # Only table and column names (from the models' meta, quoted) are formatted into the
    # SQL; every value is a parameter. Both UPDATEs follow the reply row: if it matched
    # nothing, neither changes anything.
    pending = (
        f"UPDATE {message_table} SET status = %s WHERE id = %s "  # noqa: S608
        "AND status = %s AND EXISTS (SELECT 1 FROM reply)"
    )
    leaf = (
        f"UPDATE {conversation_table} SET active_leaf_id = reply.id, "  # noqa: S608
        f"updated_at = %s FROM reply WHERE {conversation_table}.id = %s"
    )
    sql = f"WITH reply AS ({reply_sql}), pending AS ({pending}), leaf AS ({leaf}) SELECT id FROM reply"  # noqa: E501, S608
    params += [
        Message.Status.COMPLETE,
        user_message.pk,
        Message.Status.PENDING,
        now,
        user_message.conversation_id,
    ]
    # Alone the statement is atomic; inside a caller's transaction (tests, or a caller that
    # wraps it) a savepoint keeps a failure of it from aborting that whole transaction.
    nested = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with nested, prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        # The UPDATE matched nothing: the row written at the checkpoint is gone (the
        # participant's data was erased meanwhile); nothing was changed.
        raise Message.DoesNotExist(f"reply {reply.pk} no longer exists")
    reply.pk = row[0]
    reply._state.adding = False
    reply._state.db = connection.alias


@transaction.atomic
def _write_final_orm(reply: Message, *, user_message: Message, now) -> None:
    reply.save()
    if user_message.status == Message.Status.PENDING:
        # Only the first reply to a message finds it pending; a regenerated one need not ask.
        Message.objects.filter(pk=user_message.pk, status=Message.Status.PENDING).update(
            status=Message.Status.COMPLETE
        )
    Conversation.objects.filter(pk=user_message.conversation_id).update(
        active_leaf=reply, updated_at=now
    )
