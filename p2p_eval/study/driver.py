"""The participant's hot statements on PostgreSQL, run through psycopg's own cursor.

SQLAlchemy's ``Connection.execute`` costs more Python time per statement than psycopg's ``execute`` itself
(cache lookup, execution context, result metadata and row processing: about 100-150 us of CPU per
two-statement transaction here), and a pool checkout and check-in per request cost about 12% of the server's
Python time under load (py-spy on ``benchmarks/perf/study_load.py``).  The trial, image and answer requests run
a handful of fixed statements each, thousands of times a minute, so on PostgreSQL they are compiled once per
process for the engine's dialect and sent through psycopg's cursor, each database thread keeping its own
connection (:class:`ThreadConnections`).  Everything else (a study read for the first time, the ``hype-time``
staircase query) still goes through SQLAlchemy, on the same connection and in the same transaction.

:class:`DriverConnection` offers the small part of SQLAlchemy's ``Connection`` API that the Core service
functions use (``execute(...)`` then ``first`` / ``one`` / ``scalar`` / ``all`` / ``rowcount``), so the same
functions (:mod:`p2p_eval.study.service`) serve SQLite through SQLAlchemy and PostgreSQL through psycopg.
Rows are named tuples (one class per statement), read by column name as SQLAlchemy's rows are.  The psycopg
types of the columns used (integers, text, booleans, floats, ``timestamptz``) are the Python values
SQLAlchemy's psycopg dialect returns.

:meth:`DriverConnection.autocommit` runs requests that write a single statement without ``BEGIN`` and
``COMMIT`` (two round trips, about 70 us of CPU each): under PostgreSQL's READ COMMITTED, reads followed by
one write see and store exactly what the same statements inside a transaction would.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, NoResultFound
from sqlalchemy.sql import Executable


def supports(engine: Engine) -> bool:
    """Whether ``engine`` is PostgreSQL through psycopg 3 (the only driver this module speaks)."""
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


class Compiled(NamedTuple):
    """One fixed statement compiled for psycopg: its SQL, its constant bind values and, for a SELECT, the class
    of its rows (a named tuple of its column names, built once instead of per result)."""

    sql: str
    constants: dict[str, Any]
    row: type | None


class Statements:
    """Fixed SQLAlchemy statements compiled once for one engine's dialect."""

    def __init__(self, engine: Engine, statements: Iterable[Executable]) -> None:
        self._compiled: dict[int, tuple[Executable, Compiled]] = {}
        for stmt in statements:
            compiled = stmt.compile(dialect=engine.dialect)
            # bind values fixed in the statement (the 1 of ``views + 1``); the others come with each call
            constants = {k: v for k, v in compiled.params.items() if v is not None}
            row = namedtuple("Row", [c.key for c in stmt.selected_columns]) if stmt.is_select else None
            self._compiled[id(stmt)] = (stmt, Compiled(str(compiled), constants, row))

    def get(self, stmt: Executable) -> Compiled | None:
        found = self._compiled.get(id(stmt))
        return None if found is None or found[0] is not stmt else found[1]


class DriverResult:
    """The rows of one psycopg cursor, read the way the service functions read SQLAlchemy's results."""

    def __init__(self, cursor: Any, row: type | None) -> None:
        self._cursor = cursor
        self._row = row
        self.rowcount: int = cursor.rowcount

    def first(self) -> Any:
        if self._row is None:
            return None
        found = self._cursor.fetchone()
        return None if found is None else self._row._make(found)

    def one(self) -> Any:
        row = self.first()
        if row is None:
            raise NoResultFound("No row was found when one was required")
        return row

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def all(self) -> list[Any]:
        return [] if self._row is None else [self._row._make(r) for r in self._cursor.fetchall()]


class DriverConnection:
    """A SQLAlchemy connection whose compiled hot statements run through psycopg's cursor (see the module)."""

    def __init__(self, conn: Connection, statements: Statements) -> None:
        import psycopg

        self._error = psycopg.Error
        self.sqlalchemy = conn  # for the ORM and for statements not compiled here
        self._statements = statements
        self._psycopg = conn.connection.driver_connection
        self._cursor = self._psycopg.cursor()  # rows as plain tuples: the statement's row class names them

    def execute(self, stmt: Executable, params: dict[str, Any] | None = None) -> Any:
        found = self._statements.get(stmt)
        if found is None:
            return self.sqlalchemy.execute(stmt, params)
        try:
            self._cursor.execute(found.sql, {**found.constants, **params} if params else found.constants)
        except self._error as exc:
            raise self._wrapped(exc, found.sql, params) from exc
        return DriverResult(self._cursor, found.row)

    def scalars(self, stmt: Executable, params: dict[str, Any] | None = None) -> Any:
        return self.sqlalchemy.scalars(stmt, params)

    @contextmanager
    def autocommit(self) -> Iterator[DriverConnection]:
        """Each statement inside commits by itself (no ``BEGIN`` / ``COMMIT`` round trips)."""
        try:
            self._psycopg.autocommit = True  # psycopg checks the connection's state first: it may find it dropped
        except self._error as exc:
            raise self._wrapped(exc, "(autocommit on)", None) from exc
        try:
            yield self
        finally:
            if not (self._psycopg.closed or self._psycopg.broken):
                try:
                    self._psycopg.autocommit = False
                except self._error:
                    self.sqlalchemy.invalidate()  # lost meanwhile: the next request takes a new connection

    def _wrapped(self, exc: Exception, sql: str, params: dict[str, Any] | None) -> DBAPIError:
        """psycopg's error as SQLAlchemy would raise it: a DBAPIError, marked ``connection_invalidated`` when the
        database dropped the connection (SQLAlchemy's own test), so that the caller's retry on a new connection
        works as it does for SQLAlchemy's own statements.  As SQLAlchemy does on a disconnect, the pool's idle
        connections are discarded too (a restarted database dropped them all); each other thread's own
        connection is replaced when its next statement meets the same error."""
        lost = (self._psycopg.closed or self._psycopg.broken
                or self.sqlalchemy.dialect.is_disconnect(exc, self._psycopg, self._cursor))
        if lost:
            self.sqlalchemy.invalidate(exc)  # marked: its thread takes a new one
            self.sqlalchemy.engine.dispose()  # the idle pooled ones are closed too (a restart dropped them all)
        return DBAPIError.instance(sql, params, exc, self._error, connection_invalidated=lost)


class ThreadConnections:
    """One :class:`DriverConnection` per database thread, kept from one request to the next (no pool checkout
    and check-in per request).  A connection found invalidated (the database dropped it) is replaced by a new
    one from the pool."""

    def __init__(self, engine: Engine, statements: Statements) -> None:
        self._engine = engine
        self._statements = statements
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> DriverConnection:
        fast: DriverConnection | None = getattr(self._local, "conn", None)
        if fast is None or fast.sqlalchemy.closed or fast.sqlalchemy.invalidated:
            if fast is not None:
                fast.sqlalchemy.close()
            conn = self._engine.connect()
            with self._lock:
                self._all = [c for c in self._all if not c.closed] + [conn]
            fast = self._local.conn = DriverConnection(conn, self._statements)
        return fast

    @contextmanager
    def transaction(self, autocommit: bool = False) -> Iterator[DriverConnection]:
        """This thread's connection in one transaction, or with ``autocommit`` in none (each statement commits)."""
        fast = self._connection()
        conn = fast.sqlalchemy
        if not autocommit:
            with conn.begin():
                yield fast
            return
        try:
            with fast.autocommit():
                yield fast
        finally:
            if conn.in_transaction() and not conn.invalidated:
                conn.rollback()  # SQLAlchemy's own bookkeeping: it began one for a statement sent in autocommit

    def close(self) -> None:
        """Hand every connection back to the pool (once no request runs: at the server's shutdown)."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all = []
