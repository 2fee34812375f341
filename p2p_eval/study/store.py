"""Database engines for the study: any SQLAlchemy URL; SQLite gets WAL, a busy timeout and immediate writes.

SQLite settings follow the SQLite documentation (https://www.sqlite.org/wal.html): WAL lets readers run
beside one writer, ``busy_timeout`` makes a waiting writer retry instead of failing, and ``BEGIN
IMMEDIATE`` (the SQLAlchemy pysqlite recipe for serializable transactions) takes the write lock at the
start of a transaction, so two transactions never deadlock on a read-to-write lock upgrade.
``synchronous=NORMAL`` in WAL mode keeps every committed transaction across a process crash (SIGKILL).
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import sessionmaker

from p2p_eval.errors import UserError
from p2p_eval.study.models import Base

BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the study tables created; SQLite in WAL mode.

    A bare file path (no ``://``) is taken as an SQLite file.
    """
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(f"--db {url!r} is not a database URL (e.g. sqlite:///study.db or "
                        f"postgresql+psycopg://user:pass@host/db): {exc}") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
            _configure_sqlite(engine)
        else:
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (NoSuchModuleError, ImportError) as exc:
        raise UserError(f"--db {url!r}: database driver missing ({exc}); for PostgreSQL install psycopg[binary]") from None
    Base.metadata.create_all(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """WAL, busy timeout, foreign keys, and BEGIN IMMEDIATE for every transaction."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI objects
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event emit BEGIN itself
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001 - SQLAlchemy connection
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker:
    """A sessionmaker whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
