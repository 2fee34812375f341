"""Database engines for the study: any SQLAlchemy URL; SQLite gets WAL, a busy timeout and immediate writes.

As the SQLite documentation (https://www.sqlite.org/wal.html) describes: WAL lets readers run beside one writer,
``busy_timeout`` makes a waiting writer retry, ``BEGIN IMMEDIATE`` (the SQLAlchemy pysqlite recipe) takes the
write lock at the start of a transaction so that two never deadlock on a lock upgrade, and
``synchronous=NORMAL`` in WAL mode keeps every committed transaction across a process crash (SIGKILL).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError
from sqlalchemy.orm import sessionmaker

from p2p_eval.errors import UserError
from p2p_eval.study.models import Base, Study

BUSY_TIMEOUT_MS = 30_000


def parse_url(url: str) -> URL:
    """``url`` as a SQLAlchemy URL; a bare file path (no ``://``) is an SQLite file."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise UserError(f"--db {url!r} is not a database URL (e.g. sqlite:///study.db or "
                        f"postgresql+psycopg://user:pass@host/db): {exc}") from None


def sqlite_file(parsed: URL) -> Path | None:
    """The file of an SQLite URL (None for in-memory databases and other backends)."""
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, create: bool = True) -> Engine:
    """An engine for ``url``, its study tables created (``create``; else a missing SQLite file is a UserError)."""
    parsed = parse_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if (file := sqlite_file(parsed)) is not None:
        if not file.parent.is_dir():
            raise UserError(f"--db {shown}: folder {file.parent} does not exist (create it, or fix the path)")
        if not create and not file.is_file():
            raise UserError(f"--db {shown}: database file {file} does not exist; run `p2p-eval study create "
                            f"--db {shown} ...` first (or fix the path)")
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
            _configure_sqlite(engine)
        else:
            # no pool_pre_ping (a round trip per transaction): p2p_eval.study.server.Database retries instead
            engine = create_engine(parsed, pool_size=20, max_overflow=20)
    except (NoSuchModuleError, ImportError) as exc:
        raise UserError(f"--db {shown}: database driver missing ({exc}); for PostgreSQL install psycopg[binary]") from None
    try:
        if create:
            Base.metadata.create_all(engine)
        add_missing_columns(engine)  # also connects: a database that cannot be opened is reported here, by name
    except DatabaseError as exc:  # cannot connect, not a database file, no permission
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc).splitlines()[0]
        raise UserError(f"--db {shown}: cannot open the database ({reason})") from None
    return engine


def add_missing_columns(engine: Engine) -> None:
    """Add the columns the study tables define and the database lacks (all nullable: stored rows keep their meaning)."""
    with engine.begin() as conn:
        found = inspect(conn)
        for table in Base.metadata.sorted_tables:
            if found.has_table(table.name):
                have = {c["name"] for c in found.get_columns(table.name)}
                for column in (c for c in table.columns if c.name not in have):
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                                         f"{column.type.compile(engine.dialect)}")


def open_existing(url: str) -> tuple[Engine, list[str]]:
    """An engine over a database that holds a study, and the study names; else UserError (never serve it empty)."""
    engine = make_engine(url, create=False)
    shown = engine.url.render_as_string(hide_password=True)
    with engine.begin() as conn:
        names = list(conn.scalars(select(Study.name).order_by(Study.id))) \
            if inspect(conn).has_table(Study.__tablename__) else []
    if not names:
        engine.dispose()
        raise UserError(f"--db {shown}: the database holds no study; run `p2p-eval study create --db {shown} ...` "
                        "first (or fix --db)")
    return engine, names


def _configure_sqlite(engine: Engine) -> None:
    """WAL, busy timeout, foreign keys, and BEGIN IMMEDIATE for every transaction."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI objects
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event emit BEGIN itself
        cur = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "synchronous=NORMAL", "foreign_keys=ON"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001 - SQLAlchemy connection
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker:
    """A sessionmaker whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
