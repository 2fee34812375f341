"""Fixtures of the study tests: small image folders, databases (an SQLite file; a private PostgreSQL schema,
dropped afterwards), a study factory and a live uvicorn server.

PostgreSQL: the server of ``$P2P_TEST_POSTGRES_URL`` when set, else a throwaway cluster that this session makes
from the system's PostgreSQL binaries (``initdb`` + ``pg_ctl``) in a temporary folder, on a free loopback port,
and deletes at the end. As root (initdb refuses root) the cluster runs as the ``postgres`` system user, or
``nobody`` when there is none. The PostgreSQL tests skip, with one line, only when no binaries exist.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.study.loadgen import LiveServer, write_noise_folders
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.store import make_engine

PG_ENV = "P2P_TEST_POSTGRES_URL"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A skip for a missing system package (its reason says ``apt-get install``) is reported at this file with
    no line, so ``pytest -ra`` folds the skips of every test that needs the package into one line."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and "apt-get install" in str(report.longrepr[2]):
        report.longrepr = (__file__, None, report.longrepr[2])
    return report


@pytest.fixture(scope="session")
def image_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """real/ and two algorithm folders (alg_a/, alg_b/) of 12 random 32x32 PNGs with matching names."""
    return write_noise_folders(tmp_path_factory.mktemp("study_images"), count=12, side=32)


def schema_url(base: str, schema: str) -> str:
    """The PostgreSQL URL ``base`` with ``schema`` as its search path."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def postgres_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, else the newest ``/usr/lib/postgresql/*/bin`` (Debian)."""
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).resolve().parent / "pg_ctl").is_file():
        return Path(on_path).resolve().parent
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").is_file() and d.parent.name.isdigit()]
    return max(found, key=lambda d: int(d.parent.name)) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder, trust auth on 127.0.0.1 only; :meth:`stop` deletes it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            names = [n for n in ("postgres", "nobody") if _user_exists(n)]
            if not names:
                pytest.fail("throwaway PostgreSQL: running as root and no 'postgres' or 'nobody' user to run "
                            "initdb as; set P2P_TEST_POSTGRES_URL", pytrace=False)
            self.user = names[0]
        self.root = Path(tempfile.mkdtemp(prefix="p2p-pg-"))
        if self.user:
            info = pwd.getpwnam(self.user)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        self.data = self.root / "data"
        self.port = 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        kwargs: dict[str, Any] = {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid,
                                  "extra_groups": []} if self.user else {}
        done = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=120, **kwargs)
        if done.returncode:
            lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
            log = self.root / "server.log"
            logged = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
            where = f" (server log: {logged[-1]})" if logged else ""
            raise RuntimeError(f"{args[0]} exited with {done.returncode}: {lines[-1]}{where}")

    def start(self) -> str:
        """initdb, start on a free loopback port, create database ``p2p_test``; return its SQLAlchemy URL."""
        self._run("initdb", "-D", str(self.data), "-U", "p2p", "--auth=trust", "--encoding=UTF8", "--no-locale",
                  "--no-sync")
        for attempt in range(3):  # a port found free can be taken before the server binds it
            self.port = _free_port()
            options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F"
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                          "-w", "-t", "60", "start")
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        import sqlalchemy as sa

        admin = sa.create_engine(f"postgresql+psycopg://p2p@127.0.0.1:{self.port}/postgres",
                                 isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql("CREATE DATABASE p2p_test")
        finally:
            admin.dispose()
        return f"postgresql+psycopg://p2p@127.0.0.1:{self.port}/p2p_test"

    def stop(self) -> None:
        """Stop the server (if it runs) and delete the folder."""
        try:
            if (self.data / "postmaster.pid").is_file():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_base() -> Iterator[str]:
    """A PostgreSQL database for the session: ``$P2P_TEST_POSTGRES_URL``, else a throwaway cluster."""
    if os.environ.get(PG_ENV):
        yield os.environ[PG_ENV]
        return
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL binaries (initdb, pg_ctl): apt-get install postgresql, or set {PG_ENV}")
    cluster = ThrowawayPostgres(bin_dir)
    try:
        url = cluster.start()
    except Exception as err:  # noqa: BLE001 - any failure to start is one line, not a traceback per test
        cluster.stop()
        pytest.fail(f"throwaway PostgreSQL from {bin_dir} failed: {err}", pytrace=False)
    try:
        yield url
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: an SQLite file, or a private PostgreSQL schema dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    base = request.getfixturevalue("postgres_base")
    import sqlalchemy as sa

    schema = f"p2p_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(base, schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def make_study(db_url: str, image_dirs: dict[str, Path]) -> Callable[..., tuple[Any, str]]:
    """Create a study in ``db_url`` (2afc, alg_a and alg_b, 2 practice + 4 trials by default)."""

    def make(**overrides: Any) -> tuple[Any, str]:
        values: dict[str, Any] = {"name": "s1", "real": str(image_dirs["real"]),
                                  "fake": {"alg_a": str(image_dirs["alg_a"]), "alg_b": str(image_dirs["alg_b"])},
                                  "protocol": "2afc", "trials": 4, "practice": 2, "display_ms": 300, "seed": 3}
        values.update(overrides)
        engine = make_engine(db_url)
        try:
            return create_study(engine, StudySpec(**values))
        finally:
            engine.dispose()

    return make


@pytest.fixture
def client(db_url: str) -> Iterator[Any]:
    """A FastAPI TestClient over ``db_url`` with server admin token ``server-secret``."""
    from fastapi.testclient import TestClient

    from p2p_eval.study.server import create_app

    app = create_app(db_url, admin_token="server-secret")
    with TestClient(app) as test_client:
        yield test_client
    app.state.engine.dispose()


@pytest.fixture(scope="module")
def server_factory() -> Iterator[Callable[[str], LiveServer]]:
    """Start servers on any database URL; all are stopped at the end of the module."""
    servers: list[LiveServer] = []

    def start(url: str) -> LiveServer:
        servers.append(LiveServer(url).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(db_url: str) -> Iterator[Callable[[], LiveServer]]:
    """Start servers on ``db_url`` (call to start one; all are stopped after the test)."""
    servers: list[LiveServer] = []

    def start() -> LiveServer:
        servers.append(LiveServer(db_url).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium under Playwright, headless, with the flags this closed network needs (browser tests)."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()
