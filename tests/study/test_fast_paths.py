"""The study server's fast paths (issue 12) give what the straightforward ones gave.

- served bytes: encoded once and cached; the cached bytes equal a fresh encoding (PNG and same-processing
  JPEG, normal and broken), a changed file is encoded anew, and concurrent first requests encode once;
- the participant's requests (check, start, trial, image, answer) run in SQLAlchemy Core with cached study
  facts: driven through the HTTP API, a participant stores the same rows (plan, answers, scores, timing, views,
  image requests, hype-time exposures) and receives the same JSON (refusals included) as the same participant
  driven through the ORM functions of :mod:`p2p_eval.study.service`, on a twin database;
- under load through the lean load-generator client, nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import or_, select
from sqlalchemy.orm import Session as DB

from p2p_eval.study import images as imgmod
from p2p_eval.study import service
from p2p_eval.study.images import Processing, cached, encode, render
from p2p_eval.study.loadgen import run_participants
from p2p_eval.study.models import Session, Trial
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.store import make_engine, session_factory

PROCESSINGS = [Processing(), Processing(size=48, quality=75), Processing(size=32, quality=90)]


@pytest.mark.parametrize("processing", PROCESSINGS, ids=["png", "jpeg48", "jpeg32"])
@pytest.mark.parametrize("broken", [False, True])
def test_cached_bytes_equal_a_fresh_encoding(tmp_path, image_dirs, processing, broken) -> None:
    path = tmp_path / "1.png"
    path.write_bytes((image_dirs["real"] / "1.png").read_bytes())
    assert cached(path, broken, processing) is None, "nothing encoded yet"
    first = render(path, broken, processing)
    assert first == encode(path, None, broken, processing)
    assert cached(path, broken, processing) == first and render(path, broken, processing) is first, "served from memory"
    path.write_bytes((image_dirs["real"] / "2.png").read_bytes())
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert cached(path, broken, processing) is None, "a changed file is not served from the cache"
    second = render(path, broken, processing)
    assert second != first and second == encode(path, None, broken, processing)


def test_concurrent_first_requests_encode_once(tmp_path, image_dirs, monkeypatch) -> None:
    path = tmp_path / "3.png"
    path.write_bytes((image_dirs["real"] / "3.png").read_bytes())
    calls = []
    gate = threading.Event()

    def slow_encode(*args: Any) -> bytes:
        calls.append(args)
        gate.wait(5)
        return encode(*args)

    monkeypatch.setattr(imgmod, "encode", slow_encode)
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(render(path, False, PROCESSINGS[1]))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(out) == 8 and len(set(out)) == 1


def test_byte_cache_keeps_its_budget() -> None:
    cache = imgmod._ByteCache(limit=100)
    for i in range(10):
        cache.put((i,), bytes(30))
    assert cache.size <= 100 and cache.peek((9,)) is not None and cache.peek((0,)) is None


def _twin_studies(tmp_path: Path, db_url: str, image_dirs: dict[str, Path], **spec: Any) -> tuple[Any, Any]:
    """The same study (same seed, same image ids) in ``db_url`` (driven over HTTP) and a private SQLite
    file (driven through the ORM functions)."""
    values = {"name": "s1", "real": str(image_dirs["real"]), "fake": {"alg_a": str(image_dirs["alg_a"])},
              "trials": 6, "practice": 2, "vigilance": 1, "seed": 5, "redirect_url": "https://example.org/done?c={code}",
              **spec}
    engines = [make_engine(db_url), make_engine(f"sqlite:///{tmp_path / 'orm.db'}")]
    for engine in engines:
        create_study(engine, StudySpec(**values))
    return engines[0], engines[1]


def _rows(engine: Any) -> list[dict[str, Any]]:
    skip = {"id", "session_id", "img1_token", "img2_token", "answered_at"}
    with DB(engine) as db:
        s = db.scalar(select(Session))
        trials = db.scalars(select(Trial).where(Trial.session_id == s.id).order_by(Trial.index)).all()
        rows = [{c.name: getattr(t, c.key) for c in Trial.__table__.columns if c.name not in skip} |
                {"answered": t.answered_at is not None} for t in trials]
        return rows + [{"next_index": s.next_index, "completed": s.completed_at is not None}]


def _strip(reply: Any) -> Any:
    """A reply without its random parts: image tokens (their count stays) and the completion code (its
    presence stays; in the redirect URL it reads CODE)."""
    if not isinstance(reply, dict):
        return reply
    out = {**reply, "images": len(reply["images"])} if "images" in reply else dict(reply)
    if "session" in out:
        out["session"] = True
    code = out.get("completion_code")
    if code:
        out["completion_code"] = True
        out["redirect_url"] = out["redirect_url"] and out["redirect_url"].replace(code, "CODE")
    return out


@pytest.mark.parametrize("protocol", ["2afc", "sequential", "single", "hype-time", "hype-inf"])
def test_core_paths_store_what_the_orm_paths_store(tmp_path, db_url, image_dirs, protocol) -> None:
    from fastapi.testclient import TestClient

    from p2p_eval.study.server import create_app

    extra = {"staircases": 2} if protocol == "hype-time" else {}
    http_engine, orm_engine = _twin_studies(tmp_path, db_url, image_dirs, protocol=protocol, **extra)
    choices = ("1", "2") if protocol in ("2afc", "sequential") else ("real", "fake")
    arrival = {"PROLIFIC_PID": "twin", "SESSION_ID": "x"}
    http_replies, orm_replies = [], []
    with TestClient(create_app(http_engine)) as client:
        http_replies.append(client.post("/api/studies/s1/check", json=arrival).json())
        started = client.post("/api/studies/s1/sessions", json=arrival).json()
        token = started["session"]
        http_replies += [_strip(started), _strip(client.post("/api/studies/s1/sessions", json=arrival).json()),
                         client.post("/api/studies/s1/check", json=arrival).json(),
                         client.post("/api/studies/s1/sessions", json={**arrival, "SESSION_ID": "y"}).status_code,
                         client.post("/api/studies/nope/sessions", json=arrival).status_code]
        for index in range(1 + 6 + 2):
            trial = client.get(f"/api/s/{token}/trial/{index}").json()
            http_replies.append(_strip(trial))
            for url in trial["images"] + trial["images"][:1]:  # the first image twice: a re-view
                r = client.get(url)
                assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
            body = {"index": index, "answer": choices[index % 2], "response_ms": 10.0 + index, "onset1": 1.5}
            http_replies.append(_strip(client.post(f"/api/s/{token}/answer", json=body).json()))
            http_replies.append(_strip(client.post(f"/api/s/{token}/answer", json=body).json()))  # a retry: same ack
            wrong = {**body, "answer": choices[(index + 1) % 2]}
            http_replies.append(client.post(f"/api/s/{token}/answer", json=wrong).status_code)
            for url in (trial["images"][0], f"/api/s/{token}/img/nope", "/api/s/nope/img/nope"):
                r = client.get(url)  # an answered trial's image, an unknown image, an unknown session: refused
                http_replies.append((r.status_code, r.json()["detail"]))
    factory = session_factory(orm_engine)

    def orm(fn: Any, *args: Any, detail: bool = False) -> Any:
        try:
            with factory() as db, db.begin():
                return fn(db, *args)
        except service.Rejected as exc:
            return (exc.status, str(exc)) if detail else exc.status

    orm_replies.append(orm(service.check_session, "s1", service.Arrival(**arrival)))
    started = orm(service.start_session, "s1", service.Arrival(**arrival))
    token = started["session"]
    orm_replies += [_strip(started), _strip(orm(service.start_session, "s1", service.Arrival(**arrival))),
                    orm(service.check_session, "s1", service.Arrival(**arrival)),
                    orm(service.start_session, "s1", service.Arrival(**{**arrival, "SESSION_ID": "y"})),
                    orm(service.start_session, "nope", service.Arrival(**arrival))]
    for index in range(1 + 6 + 2):
        trial = orm(service.get_trial, token, index)
        orm_replies.append(_strip(trial))
        for url in trial["images"] + trial["images"][:1]:
            path, broken, processing = orm(service.image_file, token, url.rsplit("/", 1)[1])
            assert render(path, broken, processing)
        body = {"index": index, "answer": choices[index % 2], "response_ms": 10.0 + index, "onset1": 1.5}
        orm_replies.append(_strip(orm(service.answer, token, body)))
        orm_replies.append(_strip(orm(service.answer, token, body)))
        orm_replies.append(orm(service.answer, token, {**body, "answer": choices[(index + 1) % 2]}))
        for session, image in ((token, trial["images"][0].rsplit("/", 1)[1]), (token, "nope"), ("nope", "nope")):
            orm_replies.append(orm(service.image_file, session, image, detail=True))
    assert http_replies == orm_replies
    assert _rows(http_engine) == _rows(orm_engine)
    for engine in (http_engine, orm_engine):
        engine.dispose()


@pytest.mark.slow
def test_lean_client_load_loses_and_duplicates_nothing(db_url, make_study, live_server) -> None:
    make_study(trials=4, practice=1, vigilance=1)
    server = live_server()
    result = asyncio.run(run_participants(server.url, "s1", 40, lean=True, check=True, timeout=60))
    assert result.errors == [] and result.finished == 40
    acked = {(t, i): a for t, i, a in result.acks}
    assert len(result.acks) == len(acked) == 40 * 6
    engine = make_engine(db_url)
    try:
        with DB(engine) as db:
            rows = db.execute(select(Session.token, Trial.index, Trial.answer, Trial.fetches1, Trial.views)
                              .join(Session, Trial.session_id == Session.id)).all()
    finally:
        engine.dispose()
    assert {(t, i): a for t, i, a, _, _ in rows if a is not None} == acked
    assert all(f == 1 and v == 1 for *_, f, v in rows), "each image requested once, each trial opened once"
    assert set(result.by_type) == {"check", "start", "trial", "image", "answer"}


@contextmanager
def _private_schema(postgres_base: str, image_dirs: dict[str, Path], app: str) -> Iterator[tuple[Any, Any]]:
    """(engine, admin engine): a study ``s1`` in a schema of its own, dropped afterwards; the engine's
    connections carry ``application_name`` ``app``, so that PostgreSQL's view of them can be queried."""
    import sqlalchemy as sa

    from tests.study.conftest import _postgres_url

    schema = f"p2p_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(postgres_base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = None
    try:
        engine = make_engine(f"{_postgres_url(postgres_base, schema)}&application_name={app}")
        create_study(engine, StudySpec(name="s1", real=str(image_dirs["real"]), fake={"a": str(image_dirs["alg_a"])},
                                       trials=4, practice=2))
        yield engine, admin
    finally:
        if engine is not None:
            engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.mark.postgres
def test_requests_after_the_database_dropped_its_connections(postgres_base, image_dirs) -> None:
    """Pooled connections are not pinged before use: when PostgreSQL drops them (a restart), the next
    requests still succeed, each transaction that met a dead connection being run again on a new one."""
    from fastapi.testclient import TestClient

    from p2p_eval.study.server import create_app

    name = f"p2p_drop_{secrets.token_hex(4)}"
    with _private_schema(postgres_base, image_dirs, name) as (engine, admin):

        def drop_connections() -> None:
            with admin.begin() as conn:
                dropped = conn.exec_driver_sql(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                    (name,)).scalar()
            assert dropped >= 1

        with TestClient(create_app(engine)) as client:
            arrival = {"anon_id": "p1"}
            token = client.post("/api/studies/s1/sessions", json=arrival).json()["session"]
            assert client.get(f"/api/s/{token}/trial/0").status_code == 200
            drop_connections()  # the first request after the drop: a SQLAlchemy Core transaction
            check = client.post("/api/studies/s1/check", json=arrival)
            assert check.status_code == 200 and check.json()["status"] == "resume"
            drop_connections()  # an answer (PostgreSQL: psycopg's own cursor, in a transaction)
            assert client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "1"}).json()["accepted"]
            drop_connections()  # a trial (PostgreSQL: psycopg's own cursor, in autocommit)
            trial = client.get(f"/api/s/{token}/trial/1")
            assert trial.status_code == 200
            drop_connections()  # an image (the same)
            assert client.get(trial.json()["images"][0]).status_code == 200


@pytest.mark.postgres
def test_server_database_connections_are_open_before_the_first_request(postgres_base, image_dirs) -> None:
    """At startup the app opens one connection per database thread (PostgreSQL's own count of its backends),
    so that the first participants do not wait for connections to be set up; then each thread keeps its own:
    participants' requests take no connection from the pool after each thread's first."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from p2p_eval.study.server import DB_THREADS, create_app

    name = f"p2p_warm_{secrets.token_hex(4)}"
    with _private_schema(postgres_base, image_dirs, name) as (engine, admin):

        def backends() -> int:
            with admin.begin() as conn:
                return conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                            (name,)).scalar()

        engine.dispose()
        # a closed connection's backend leaves pg_stat_activity a moment after the client has gone: wait for it
        deadline = time.monotonic() + 10
        while backends() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backends() == 0
        with TestClient(create_app(engine)) as client:
            assert backends() == DB_THREADS, "one connection per database thread, before any request"
            assert client.post("/api/studies/s1/check", json={"anon_id": "p1"}).json() == {"status": "new"}
            checkouts = []
            event.listen(engine, "engine_connect", lambda conn: checkouts.append(conn))
            for k in range(3):  # arrival, start, a trial with its images, an answer: Core and psycopg requests
                arrival = {"anon_id": f"q{k}"}
                assert client.post("/api/studies/s1/check", json=arrival).status_code == 200
                token = client.post("/api/studies/s1/sessions", json=arrival).json()["session"]
                trial = client.get(f"/api/s/{token}/trial/0").json()
                assert all(client.get(url).status_code == 200 for url in trial["images"])
                assert client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "1"}).json()["accepted"]
            assert len(checkouts) <= DB_THREADS
            assert backends() == DB_THREADS


def test_an_image_whose_file_left_its_folder_is_refused_and_not_counted(db_url, make_study, image_dirs, tmp_path) -> None:
    """When an image's stored path has left its folder since its trial was opened (seen by a server process
    that has not cached the image), the image request is refused (404) and not counted, whether it runs in a
    transaction or in autocommit (a guard for any one-statement version of the request): the stored counts
    are those before the request."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from p2p_eval.study.models import Image
    from p2p_eval.study.server import create_app

    make_study()
    engine = make_engine(db_url)
    with TestClient(create_app(engine)) as client:
        token = client.post("/api/studies/s1/sessions", json={"anon_id": "p1"}).json()["session"]
        trial = client.get(f"/api/s/{token}/trial/0").json()
    image_token = trial["images"][0].rsplit("/", 1)[1]
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(next(image_dirs["real"].iterdir()).read_bytes())
    with engine.begin() as conn:
        row = conn.execute(select(Trial.id, Trial.img1_token, Trial.img1_id, Trial.img2_id)
                           .where(or_(Trial.img1_token == image_token, Trial.img2_token == image_token))).one()
        image_id = row.img1_id if row.img1_token == image_token else row.img2_id
        conn.execute(sa.update(Image).where(Image.id == image_id).values(path=str(outside)))
    counts = select(Trial.fetches1, Trial.fetches2).where(Trial.id == row.id)
    with engine.connect() as conn:
        before = tuple(conn.execute(counts).one())
    for mode in ("AUTOCOMMIT", None):
        connection = engine.execution_options(isolation_level=mode).connect() if mode else engine.connect()
        with connection as conn, pytest.raises(service.Rejected) as refused:
            with conn.begin() if mode is None else nullcontext():
                service.fetch_image(conn, service.Catalog(), token, image_token)
        assert refused.value.status == 404
        with engine.connect() as conn:
            assert tuple(conn.execute(counts).one()) == before, f"not counted ({mode or 'transaction'})"
    engine.dispose()


@pytest.mark.postgres
def test_driver_rows_equal_sqlalchemy_rows(postgres_base, image_dirs) -> None:
    """Every hot statement sent through psycopg (:mod:`p2p_eval.study.driver`) gives the rows SQLAlchemy gives
    for it (column names, order and values), and its updates change the rows as SQLAlchemy's do."""
    from fastapi.testclient import TestClient

    from p2p_eval.study.driver import DriverConnection, Statements
    from p2p_eval.study.models import Trial
    from p2p_eval.study.server import create_app

    with _private_schema(postgres_base, image_dirs, f"p2p_rows_{secrets.token_hex(4)}") as (engine, _admin):
        with TestClient(create_app(engine)) as client:
            token = client.post("/api/studies/s1/sessions", json={"anon_id": "p1"}).json()["session"]
            itok = client.get(f"/api/s/{token}/trial/0").json()["images"][-1].rsplit("/", 1)[1]
        statements = Statements(engine, service.HOT_STATEMENTS)
        with engine.connect() as conn:
            trial = conn.execute(select(Trial.__table__).where(or_(Trial.img1_token == itok,
                                                                    Trial.img2_token == itok))).one()
            params = {service._SESSION_EXISTS: {"token": token}, service._SESSION_TRIAL: {"token": token, "idx": 0},
                      service._TRIAL_BY_ID: {"tid": trial.id}, service._OPEN_IMAGE: {"token": token, "itok": itok},
                      service._IMAGE: {"iid": trial.img2_id if trial.img2_token == itok else trial.img1_id}}
            fast = DriverConnection(conn, statements)
            for stmt, bound in params.items():
                expected = [row._asdict() for row in conn.execute(stmt, bound).all()]
                assert expected, stmt
                assert [row._asdict() for row in fast.execute(stmt, bound).all()] == expected
                assert fast.execute(stmt, bound).first()._asdict() == expected[0]
                assert fast.execute(stmt, bound).scalar() == next(iter(expected[0].values()))
            views = conn.execute(select(Trial.views).where(Trial.id == trial.id)).scalar()
            assert fast.execute(service._VIEWED, {"tid": trial.id}).rowcount == 1
            assert fast.execute(service._FETCHED[2], {"tid": trial.id}).rowcount == 1
            assert fast.execute(service._VIEWED, {"tid": -1}).rowcount == 0
            after = conn.execute(select(Trial.views, Trial.fetches2).where(Trial.id == trial.id)).one()
            assert (after.views, after.fetches2) == (views + 1, trial.fetches2 + 1)
            conn.rollback()


def test_load_benchmark_runs_the_baseline_with_one_process(tmp_path: Path) -> None:
    """benchmarks/perf/study_load.py compares one process with one: a baseline whose ``study serve`` takes
    ``--workers`` (its default became two on PostgreSQL) is started with ``--workers 1``; an older one, which
    ran one process and knew no such flag, with nothing added.  Checked on the real exported revisions."""
    import importlib.util
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("study_load", repo / "benchmarks" / "perf" / "study_load.py")
    study_load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study_load)
    if subprocess.run(["git", "cat-file", "-e", "e97e3f2^{commit}"], cwd=repo, capture_output=True).returncode:
        pytest.skip("not a git checkout with the history of issue 12")
    for rev, expected in (("e97e3f2", ()), ("443fc74", ("--workers", "1")), ("HEAD", ("--workers", "1"))):
        root = tmp_path / rev
        root.mkdir()
        assert study_load.baseline_source(rev, root) == root
        assert study_load.baseline_options(root) == expected, rev
