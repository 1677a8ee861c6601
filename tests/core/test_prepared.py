"""Prepared statements for the chat send's hot statements (core/prepared.py, issue 19)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from studyplatform.core import prepared

pytestmark = pytest.mark.django_db

postgresql_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="prepared statements are PostgreSQL's"
)

SQL = "SELECT %s + 1, CAST(%s AS text)"


def prepared_names() -> set[bytes]:
    return set(connection.connection._prepared._names.values())


@postgresql_only
def test_a_statement_is_prepared_at_its_first_execution_and_reused():
    # when: the same statement runs twice through prepared cursors
    with prepared.prepared_cursor() as cursor:
        cursor.execute(SQL, [41, "x"])
        first = cursor.fetchone()
    names = prepared_names()
    with prepared.prepared_cursor() as cursor:
        cursor.execute(SQL, [1, "y"])
        second = cursor.fetchone()
    # then: the server holds it as a named statement, executed again with new values
    assert first == (42, "x") and second == (2, "y")
    assert names and prepared_names() == names
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        assert {row[0].encode() for row in cursor.fetchall()} >= names


@postgresql_only
def test_a_prepared_statement_gets_its_generic_plan_from_its_first_execution():
    # PostgreSQL's default plans a prepared statement's first five executions for their
    # values (~1.2 ms each for the storing statement); settings ask for the generic plan
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone() == ("force_generic_plan",)
    with prepared.prepared_cursor() as cursor:
        cursor.execute(SQL, [41, "x"])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE 'SELECT $1 + 1%%'"
        )
        assert cursor.fetchall() == [(1, 0)]


@postgresql_only
def test_ordinary_cursors_still_prepare_nothing():
    before = prepared_names()
    with connection.cursor() as cursor:
        for _ in range(3):
            cursor.execute("SELECT %s + 2", [1])
    assert prepared_names() == before


@postgresql_only
def test_the_query_log_shows_the_statement_with_its_values():
    with CaptureQueriesContext(connection) as queries, prepared.prepared_cursor() as cursor:
        cursor.execute(SQL, [41, "it's"])
    assert queries.captured_queries[-1]["sql"] == "SELECT 41 + 1, CAST('it''s' AS text)"


@postgresql_only
def test_database_errors_are_djangos():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE prepared_probe (k int PRIMARY KEY)")
    with prepared.prepared_cursor() as cursor:
        cursor.execute("INSERT INTO prepared_probe VALUES (%s)", [1])
        with pytest.raises(IntegrityError):
            cursor.execute("INSERT INTO prepared_probe VALUES (%s)", [1])


def test_switched_off_or_elsewhere_the_ordinary_cursor_runs_the_same_sql(settings):
    # given: prepared statements off (a transaction-pooling proxy), or not PostgreSQL
    settings.DB_PREPARED_STATEMENTS = False
    before = prepared_names() if connection.vendor == "postgresql" else set()
    # when
    with prepared.prepared_cursor() as cursor:
        cursor.execute("SELECT %s + 3", [1])
        row = cursor.fetchone()
    # then: answered, and nothing new prepared
    assert row == (4,)
    assert not prepared.enabled()
    if connection.vendor == "postgresql":
        assert prepared_names() == before
