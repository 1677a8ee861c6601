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

from studyplatform.participants.models import Participant
from studyplatform.studies.models import Arm, ProtocolVersion, Study

from .models import Conversation

# (model, table alias, the relation joined to reach it: (alias, FK attname) or None)
_TABLES = (
    (Conversation, "c", None),
    (Arm, "a", ("c", "arm_id")),
    (Participant, "p", ("c", "participant_id")),
    (Study, "s", ("p", "study_id")),
    (ProtocolVersion, "v", ("s", "current_version_id")),  # LEFT JOIN: a study may have none
)


@dataclass(frozen=True)
class _Block:
    model: type
    start: int
    attnames: tuple[str, ...]
    converters: tuple[tuple[int, tuple], ...]  # (offset in block, (converter, expression)...)


def _build(conn) -> tuple[str, tuple[_Block, ...]]:
    quote = conn.ops.quote_name
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
        blocks.append(
            _Block(
                model,
                len(columns) - len(fields),
                tuple(f.attname for f in fields),
                tuple(converters),
            )
        )
        table = quote(model._meta.db_table)
        if via is None:
            joins.append(f"FROM {table} {alias}")
        else:
            source, attname = via
            kind = "LEFT JOIN" if alias == "v" else "JOIN"
            joins.append(f"{kind} {table} {alias} ON {alias}.id = {source}.{quote(attname)}")
    # Only table and column names from the models' meta are formatted in; values are params.
    where = "WHERE c.id = %s AND c.participant_id = %s"
    sql = f"SELECT {', '.join(columns)} {' '.join(joins)} {where}"
    return sql, tuple(blocks)


_built: dict[str, tuple[str, tuple[_Block, ...]]] = {}


def conversation_for_send(conversation_id: int, participant_id: int) -> Conversation | None:
    """The participant's conversation (None if it is not theirs), with .arm, .participant,
    .participant.study and its .current_version loaded."""
    built = _built.get(connection.vendor)
    if built is None:
        built = _built[connection.vendor] = _build(connection)
    sql, blocks = built
    with connection.cursor() as cursor:
        cursor.execute(sql, [conversation_id, participant_id])
        row = cursor.fetchone()
    if row is None:
        return None
    objects = []
    for block in blocks:
        values = list(row[block.start : block.start + len(block.attnames)])
        for offset, chain in block.converters:
            for converter, expression in chain:
                values[offset] = converter(values[offset], expression, connection)
        if block.model is ProtocolVersion and values[0] is None:
            objects.append(None)  # the LEFT JOIN found no current version
            continue
        objects.append(block.model.from_db(connection.alias, block.attnames, values))
    conversation, arm, participant, study, version = objects
    Study._meta.get_field("current_version").set_cached_value(study, version)
    Participant._meta.get_field("study").set_cached_value(participant, study)
    Conversation._meta.get_field("participant").set_cached_value(conversation, participant)
    Conversation._meta.get_field("arm").set_cached_value(conversation, arm)
    return conversation
