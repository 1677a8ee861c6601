"""Set-based writes the ORM does not offer, for the schedule engine's per-row values.

- ``insert_from_select``: ``INSERT … SELECT`` skipping rows that hit a unique constraint, so rows
  already in the database (due cursors) become new rows (invitations) without passing through
  Python;
- ``insert_ignoring_conflicts``: the same for rows given in Python (``bulk_create`` with
  ``ignore_conflicts`` prepares every field of every model instance, ~0.25 ms a row as measured
  by benchmarks/schedule_tick.py; here only the given values are);
- ``update_from_values``: per-row values in one ``UPDATE … FROM`` per chunk, optionally
  conditional on columns still holding the values read, returning the ids changed
  (``bulk_update`` builds a CASE expression per field, ~1 ms of Python a row, and cannot be
  conditional per row).

The rows travel as one array parameter per column on PostgreSQL (``unnest``): psycopg parses a
statement's placeholders client-side, ~5 µs each, and caches only short statements, so a
multi-row VALUES list of 500 rows cost more than the update itself. SQLite (>= 3.35: UPDATE FROM,
RETURNING) gets a VALUES list. Values are prepared by the model fields, as the ORM would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import connection, models
from django.db.models.constants import OnConflict

# Rows per statement: keeps SQLite's parameter count under its limit (32,766) for any model here.
CHUNK = 1_000


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def typed(expression: str, field: models.Field) -> str:
    """SQL for `expression` (a parameter or a column of a row relation) as a value of `field`.

    PostgreSQL types a bare parameter from its literal (text, or NULL, for a string or None)
    and would refuse to store text in a jsonb or timestamp column; SQLite needs no cast (and
    CAST(x AS datetime) would turn a date into a number there).
    """
    if connection.vendor == "postgresql":
        return f"CAST({expression} AS {field.db_type(connection)})"
    return expression


def _relation(fields: Sequence[models.Field], rows: Sequence[Sequence[Any]]) -> tuple[str, list]:
    """SQL for a relation ``v (c0, c1, …)`` holding `rows` (values in the order of `fields`,
    stored as those fields would store them), and its parameters."""
    names = ", ".join(f"c{i}" for i in range(len(fields)))
    if connection.vendor == "postgresql":
        arrays = [
            [f.get_db_prep_save(row[i], connection) for row in rows] for i, f in enumerate(fields)
        ]
        casts = ", ".join(f"CAST(%s AS {f.db_type(connection)}[])" for f in fields)
        return f"unnest({casts}) AS v ({names})", arrays
    params = [
        f.get_db_prep_save(v, connection) for row in rows for f, v in zip(fields, row, strict=True)
    ]
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    columns = ", ".join(f"column{i + 1} AS c{i}" for i in range(len(fields)))
    values = ", ".join([one] * len(rows))
    return f"(SELECT {columns} FROM (VALUES {values})) AS v", params  # noqa: S608 - placeholders only


def insert_from_select(
    model: type[models.Model],
    *,
    select: Mapping[str, str],
    values: Mapping[str, Any],
    source: str,
    params: Sequence[Any] = (),
    with_sql: str = "",
    with_params: Sequence[Any] = (),
) -> int:
    """``INSERT INTO model … [WITH with_sql] SELECT … FROM source``, skipping rows that would
    violate a unique constraint; returns how many rows were inserted.

    ``select`` maps attnames to SQL expressions over ``source`` (no parameters); ``values``
    gives attnames one value for every row; every other field takes its default. ``params``
    are the parameters of ``source`` (its WHERE clause included).
    """
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    unknown = (set(select) | set(values)) - {f.attname for f in fields}
    if unknown:
        raise ValueError(f"not concrete fields of {model.__name__}: {sorted(unknown)}")
    ops = connection.ops
    expressions: list[str] = []
    value_params: list[Any] = []
    for f in fields:
        if f.attname in select:
            expressions.append(select[f.attname])
            continue
        value = values[f.attname] if f.attname in values else f.get_default()
        expressions.append(typed("%s", f))
        value_params.append(f.get_db_prep_save(value, connection))
    table = ops.quote_name(model._meta.db_table)
    columns = ", ".join(ops.quote_name(f.column) for f in fields)
    insert = ops.insert_statement(on_conflict=OnConflict.IGNORE)
    suffix = ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None)
    selected = ", ".join(expressions)
    # The WITH goes after INSERT: Python's sqlite3 reports no rowcount for a statement that
    # does not start with INSERT. Names come from the model and the caller's SQL; every value is
    # a parameter.
    query = f"WITH {with_sql} SELECT {selected}" if with_sql else f"SELECT {selected}"
    sql = f"{insert} {table} ({columns}) {query} FROM {source} {suffix}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*with_params, *value_params, *params])
        return max(cursor.rowcount, 0)


def insert_ignoring_conflicts(model: type[models.Model], rows: Sequence[dict[str, Any]]) -> int:
    """INSERT ``rows`` (dicts of attname -> value; other fields take their default) and return
    how many were inserted: rows that would violate a unique constraint are skipped."""
    if not rows:
        return 0
    meta = model._meta
    names = sorted(set().union(*(r.keys() for r in rows)))
    fields = [meta.get_field(name) for name in names]
    if any(f.attname != name for f, name in zip(fields, names, strict=True)):
        raise ValueError("rows must be keyed by attname (participant_id, not participant)")
    inserted = 0
    for chunk in chunks(rows, CHUNK):
        source, params = _relation(fields, [[row.get(name) for name in names] for row in chunk])
        inserted += insert_from_select(
            model,
            select={f.attname: typed(f"v.c{i}", f) for i, f in enumerate(fields)},
            values={},
            source=source,
            params=params,
        )
    return inserted


def update_from_values(
    model: type[models.Model],
    rows: Sequence[Sequence[Any]],
    *,
    set_fields: Sequence[str],
    match_fields: Sequence[str] = (),
    where_in: Mapping[str, Sequence[Any]] | None = None,
) -> list[int]:
    """Per-row UPDATE in one statement per chunk; returns the primary keys of the rows changed.

    Each row is ``(pk, *values of match_fields, *new values of set_fields)``. A row changes only
    if its columns in ``match_fields`` still hold the given values (so a concurrent writer that
    got there first wins, and this one leaves that row alone) and, for each field named in
    ``where_in``, its column holds one of the given values.
    """
    if not rows:
        return []
    meta = model._meta
    ops = connection.ops
    table = ops.quote_name(meta.db_table)
    pk = meta.pk
    match = [meta.get_field(name) for name in match_fields]
    assign = [meta.get_field(name) for name in set_fields]
    fields = [pk, *match, *assign]

    def value(i: int) -> str:
        return typed(f"v.c{i}", fields[i])

    conditions = [f"{table}.{ops.quote_name(pk.column)} = {value(0)}"]
    conditions += [
        f"{table}.{ops.quote_name(f.column)} = {value(i)}" for i, f in enumerate(match, start=1)
    ]
    where_params: list[Any] = []
    for name, allowed in (where_in or {}).items():
        f = meta.get_field(name)
        conditions.append(
            f"{table}.{ops.quote_name(f.column)} IN ({', '.join(['%s'] * len(allowed))})"
        )
        where_params.extend(f.get_db_prep_save(v, connection) for v in allowed)
    assignments = ", ".join(
        f"{ops.quote_name(f.column)} = {value(i)}"
        for i, f in enumerate(assign, start=1 + len(match))
    )
    where = " AND ".join(conditions)
    returning = f"{table}.{ops.quote_name(pk.column)}"
    changed: list[int] = []
    with connection.cursor() as cursor:
        for chunk in chunks(rows, CHUNK):
            source, params = _relation(fields, chunk)
            # Names come from the model; every value is a parameter.
            update = f"UPDATE {table} SET {assignments} FROM {source} WHERE {where}"  # noqa: S608
            cursor.execute(f"{update} RETURNING {returning}", [*params, *where_params])
            changed.extend(r[0] for r in cursor.fetchall())
    return changed
