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
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

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
    converters: tuple[tuple[int, tuple], ...]  # (offset in block, (converter, expression)...)
    optional: bool  # reached through a nullable FK (LEFT JOIN): no row means None


def _build(conn) -> tuple[str, tuple[_Block, ...]]:
    quote = conn.ops.quote_name
    models = {alias: model for model, alias, _ in _TABLES}
    columns, joins, blocks = [], [], []
    for model, alias, via in _TABLES:
        fields = model._meta.concrete_fields
        converters = []
        for offset, field in enumerate(fields):
            col = field.get_col(alias)
            found = [*conn.ops.get_db_converters(col), *col.get_db_converters(conn)]
            if found:
                converters.append((offset, tuple((c, col) for c in found)))
            columns.append(f"{alias}.{quote(field.column)}")
        table = quote(model._meta.db_table)
        optional = False
        if via is None:
            joins.append(f"FROM {table} {alias}")
        else:
            source, name = via
            fk = models[source]._meta.get_field(name)
            optional = fk.null
            kind = "LEFT JOIN" if optional else "JOIN"
            pk = quote(model._meta.pk.column)
            joins.append(f"{kind} {table} {alias} ON {alias}.{pk} = {source}.{quote(fk.column)}")
        blocks.append(
            _Block(
                model,
                len(columns) - len(fields),
                tuple(f.attname for f in fields),
                tuple(converters),
                optional,
            )
        )
    # Only table and column names from the models' meta are formatted in; values are params.
    where = "WHERE c.id = %s"
    sql = f"SELECT {', '.join(columns)} {' '.join(joins)} {where}"
    return sql, tuple(blocks)


_built: dict[str, tuple[str, tuple[_Block, ...]]] = {}


def conversation_for_send(conversation_id: int, participant_id: int | None) -> Conversation | None:
    """The participant's conversation (None if it is not theirs), with .arm, .participant,
    .participant.study and its .current_version loaded.

    participant_id None: the conversation whoever's it is, for a caller that reads it before it
    knows the session's participant and then compares conversation.participant_id itself (the
    chat send, whose session is read from Redis at the same time)."""
    built = _built.get(connection.vendor)
    if built is None:
        built = _built[connection.vendor] = _build(connection)
    sql, blocks = built
    params = [conversation_id]
    if participant_id is not None:
        sql += " AND c.participant_id = %s"
        params.append(participant_id)
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    objects = []
    for block in blocks:
        values = list(row[block.start : block.start + len(block.attnames)])
        for offset, chain in block.converters:
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
