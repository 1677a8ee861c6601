"""Cursors whose statements PostgreSQL parses and plans once per connection.

Django's psycopg cursors bind parameters on the client: every statement reaches the server as
new text, which it parses and plans again. For the chat send's statements that planning is
most of their server time (EXPLAIN ANALYZE of the conversation read: 0.21-0.26 ms planning
against 0.04-0.08 ms executing). A server-binding cursor sends the SQL once as a named
prepared statement per pooled connection and afterwards only its parameters. Settings start
each connection with plan_cache_mode=force_generic_plan (DB_GENERIC_PLANS), so the server plans
it then too, once, rather than for each of its first five executions' values.

Only code that asks for `prepared_cursor()` gets one; every other query keeps Django's
client-side binding, whose cursors psycopg never prepares. Its statements must type their
parameters where PostgreSQL cannot infer them (the chat statements CAST theirs).

Set DB_PREPARED_STATEMENTS=false behind a transaction-pooling proxy that cannot keep
prepared statements (PgBouncer before 1.21, or without max_prepared_statements): the same
statements then go through the ordinary cursor.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DataError, connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper


def enabled() -> bool:
    return connection.vendor == "postgresql" and settings.DB_PREPARED_STATEMENTS


def prepared_cursor():
    """A cursor for `connection` that prepares what it executes (PostgreSQL with
    DB_PREPARED_STATEMENTS on; elsewhere the ordinary cursor). Django wraps it as it wraps its
    own (database errors become django.db errors, thread sharing is checked), and the query
    log (DEBUG, tests) shows its statements with their values, as for any other query."""
    if not enabled():
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = ServerBindingCursor(connection.connection)
        connection.validate_thread_sharing()
        if connection.queries_logged:
            return _LoggedCursor(cursor, connection)
        return connection.make_cursor(cursor)


class _LoggedCursor(CursorDebugWrapper):
    """Django's query-logging cursor, logging the statement composed with its values: Django
    would ask the cursor for the text it sent, which a prepared statement's execution lacks."""

    def execute(self, sql, params=None):
        import psycopg

        try:
            shown = self.db.ops.compose_sql(sql, params)
        except (DataError, psycopg.DataError):
            shown = sql
        with self.debug_sql(shown, params):
            return CursorWrapper.execute(self, sql, params)
