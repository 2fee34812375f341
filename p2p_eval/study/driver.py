"""The participant's hot statements on PostgreSQL, run through psycopg's own cursor.

SQLAlchemy's ``Connection.execute`` costs more Python time per statement than psycopg's ``execute`` itself
(cache lookup, execution context, result metadata and row processing: about 100-150 us of CPU per
two-statement transaction here, ``benchmarks/perf/study_load.py`` and the server's profile).  The trial, image
and answer requests run a handful of fixed statements each, thousands of times a minute, so on PostgreSQL
they are compiled once per process for the engine's dialect and sent through psycopg's cursor of the same
pooled connection, in the same transaction.  Everything else (a study read for the first time, the
``hype-time`` staircase query) still goes through SQLAlchemy on that connection.

:class:`DriverConnection` offers the small part of SQLAlchemy's ``Connection`` API that the Core service
functions use (``execute(...)`` then ``first`` / ``one`` / ``scalar`` / ``all`` / ``rowcount``), so the same
functions (:mod:`p2p_eval.study.service`) serve SQLite through SQLAlchemy and PostgreSQL through psycopg.
Rows are named tuples, read by column name as SQLAlchemy's rows are.  The psycopg types of the columns used
(integers, text, booleans, floats, ``timestamptz``) are the Python values SQLAlchemy's psycopg dialect returns.

:meth:`DriverConnection.autocommit` runs requests that write a single statement without ``BEGIN`` and
``COMMIT`` (two round trips, about 70 us of CPU each): under PostgreSQL's READ COMMITTED, reads followed by
one write see and store exactly what the same statements inside a transaction would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, NoResultFound
from sqlalchemy.sql import Executable


def supports(engine: Engine) -> bool:
    """Whether ``engine`` is PostgreSQL through psycopg 3 (the only driver this module speaks)."""
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


class Statements:
    """SQL text and constant bind values of fixed SQLAlchemy statements, compiled once for one dialect."""

    def __init__(self, engine: Engine, statements: Iterable[Executable]) -> None:
        self._compiled: dict[int, tuple[Executable, str, dict[str, Any]]] = {}
        for stmt in statements:
            compiled = stmt.compile(dialect=engine.dialect)
            # bind values fixed in the statement (the 1 of ``views + 1``); the others come with each call
            constants = {k: v for k, v in compiled.params.items() if v is not None}
            self._compiled[id(stmt)] = (stmt, str(compiled), constants)

    def get(self, stmt: Executable) -> tuple[str, dict[str, Any]] | None:
        found = self._compiled.get(id(stmt))
        return None if found is None or found[0] is not stmt else found[1:]


class DriverResult:
    """The rows of one psycopg cursor, read the way the service functions read SQLAlchemy's results."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.rowcount: int = cursor.rowcount

    def first(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def one(self) -> Any:
        row = self.first()
        if row is None:
            raise NoResultFound("No row was found when one was required")
        return row

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def all(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []


class DriverConnection:
    """A SQLAlchemy connection whose compiled hot statements run through psycopg's cursor (see the module)."""

    def __init__(self, conn: Connection, statements: Statements) -> None:
        import psycopg
        from psycopg.rows import namedtuple_row

        self._error = psycopg.Error
        self.sqlalchemy = conn  # for the ORM and for statements not compiled here
        self._statements = statements
        self._psycopg = conn.connection.driver_connection
        self._cursor = self._psycopg.cursor(row_factory=namedtuple_row)

    def execute(self, stmt: Executable, params: dict[str, Any] | None = None) -> Any:
        found = self._statements.get(stmt)
        if found is None:
            return self.sqlalchemy.execute(stmt, params)
        sql, constants = found
        try:
            self._cursor.execute(sql, {**constants, **params} if params else constants)
        except self._error as exc:
            raise self._wrapped(exc, sql, params) from exc
        return DriverResult(self._cursor)

    def scalars(self, stmt: Executable, params: dict[str, Any] | None = None) -> Any:
        return self.sqlalchemy.scalars(stmt, params)

    @contextmanager
    def autocommit(self) -> Iterator[DriverConnection]:
        """Each statement inside commits by itself (no ``BEGIN`` / ``COMMIT`` round trips)."""
        self._psycopg.autocommit = True
        try:
            yield self
        finally:
            if not (self._psycopg.closed or self._psycopg.broken):
                self._psycopg.autocommit = False

    def _wrapped(self, exc: Exception, sql: str, params: dict[str, Any] | None) -> DBAPIError:
        """psycopg's error as SQLAlchemy would raise it: a DBAPIError, marked ``connection_invalidated`` when the
        database dropped the connection (SQLAlchemy's own test), so that the caller's retry on a new connection
        works as it does for SQLAlchemy's own statements.  As SQLAlchemy does on a disconnect, every connection
        the pool opened until now is discarded (a restarted database dropped them all), not only this one;
        ``Pool._invalidate`` is the call SQLAlchemy makes for it (there is no public one)."""
        lost = self.sqlalchemy.dialect.is_disconnect(exc, self._psycopg, self._cursor)
        if lost:
            self.sqlalchemy.engine.pool._invalidate(self.sqlalchemy.connection, exc)
        return DBAPIError.instance(sql, params, exc, self._error, connection_invalidated=lost)
