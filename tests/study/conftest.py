"""Fixtures of the study tests: small image folders, databases (SQLite file; PostgreSQL schema when
P2P_TEST_POSTGRES_URL is set, dropped afterwards), a study factory and a live uvicorn server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from p2p_eval.study.loadgen import LiveServer, write_noise_folders
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.store import make_engine

PG_ENV = "P2P_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def image_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """real/ and two algorithm folders (alg_a/, alg_b/) of 12 random 32x32 PNGs with matching names."""
    return write_noise_folders(tmp_path_factory.mktemp("study_images"), count=12, side=32)


def _postgres_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: an SQLite file, or a private PostgreSQL schema dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} not set")
    import sqlalchemy as sa

    schema = f"p2p_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield _postgres_url(base, schema)
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
