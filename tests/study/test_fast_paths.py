"""The study server's participant requests and served bytes.

- served bytes: encoded once and cached; the cached bytes equal a fresh encoding (PNG and same-processing
  JPEG, normal and broken), a changed file is encoded anew, and concurrent first requests encode once;
- the participant's requests (check, start, trial, image, answer), driven through the HTTP API for every
  protocol, give the replies and store the rows (answers, scores, timing, views, image requests, hype-time
  exposures) that the rules give, derived by hand from the stored plan;
- under load through the lean load-generator client, nothing is lost or duplicated; a server database's
  dropped connections are reopened.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import or_, select

from p2p_eval.study import images as imgmod
from p2p_eval.study import service
from p2p_eval.study.images import Processing, cached, encode, render
from p2p_eval.study.models import Session, Trial
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.store import make_engine
from tests.study.loadgen import Pace, run_participants

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


def _plan(engine: Any) -> list[Any]:
    """The stored trials of the only session, in order."""
    with engine.connect() as conn:
        return conn.execute(select(Trial.__table__).order_by(Trial.index)).all()


def _truth(protocol: str, fake_slot: int) -> str:
    """The correct answer to a trial when the question is "which is fake"."""
    if protocol in ("2afc", "sequential"):
        return str(fake_slot)
    return "fake" if fake_slot else "real"


def _expected_exposures(plan: list[Any], correct: dict[int, bool]) -> dict[int, int]:
    """Hand rule of the HYPE-time staircase (Zhou et al. 2019, section 3.1), defaults: ladder 100..1000 ms,
    start 500 ms, 3 correct in a row -> one rung shorter, an error -> one rung longer, each staircase on its
    own; practice at the start exposure, vigilance at the longest."""
    ladder, level, run, out = list(range(100, 1001, 100)), {}, {}, {}
    for t in plan:
        if t.kind == "practice":
            out[t.index] = 500
        elif t.kind == "vigilance":
            out[t.index] = 1000
        else:
            s = t.staircase
            level.setdefault(s, ladder.index(500))
            out[t.index] = ladder[level[s]]
            if correct[t.index]:
                run[s] = run.get(s, 0) + 1
                if run[s] == 3:
                    level[s], run[s] = max(0, level[s] - 1), 0
            else:
                level[s], run[s] = min(len(ladder) - 1, level[s] + 1), 0
    return out


@pytest.mark.parametrize("protocol", ["2afc", "sequential", "single", "hype-time", "hype-inf"])
def test_participant_requests_follow_the_rules(db_url, make_study, image_dirs, protocol) -> None:
    """One participant through every request (refusals included): each reply and each stored row is the one
    the rules give, derived by hand from the stored plan (which slot holds the fake, which trials are practice)."""
    from fastapi.testclient import TestClient

    from p2p_eval.study.server import create_app

    extra = {"staircases": 2} if protocol == "hype-time" else {}
    make_study(protocol=protocol, trials=6, practice=2, vigilance=1, seed=5, display_ms=1000,
               fake={"alg_a": str(image_dirs["alg_a"])}, redirect_url="https://example.org/done?c={code}", **extra)
    engine = make_engine(db_url)
    single = protocol not in ("2afc", "sequential")
    arrival = {"PROLIFIC_PID": "p1", "SESSION_ID": "x"}
    state = {"participant": "p1", "source": "prolific", "protocol": protocol, "question": "fake",
             "display_ms": 1000, "practice": 2, "total": 9, "next_index": 0, "done": False, "resumed": False,
             "completion_code": None, "redirect_url": None, "answer_ms": None}
    with TestClient(create_app(engine)) as client:
        assert client.post("/api/studies/s1/check", json=arrival).json() == {"status": "new"}
        started = client.post("/api/studies/s1/sessions", json=arrival).json()
        token = started.pop("session")
        assert started == state
        assert client.post("/api/studies/s1/sessions", json=arrival).json() == {"session": token, **state}
        assert client.post("/api/studies/s1/check", json=arrival).json() == \
            {"status": "resume", "next_index": 0, "total": 9, "practice": 2}
        assert client.post("/api/studies/s1/sessions", json={**arrival, "SESSION_ID": "y"}).status_code == 409
        assert client.post("/api/studies/nope/sessions", json=arrival).status_code == 404
        plan = _plan(engine)
        # correct on every trial but each fourth, so that the staircases move both ways
        answers = {t.index: _truth(protocol, t.fake_slot) for t in plan}
        wrong = {"1": "2", "2": "1", "real": "fake", "fake": "real"}
        answers = {i: (wrong[a] if i % 4 == 3 else a) for i, a in answers.items()}
        correct = {i: i % 4 != 3 for i in answers}
        exposures = _expected_exposures(plan, correct) if protocol == "hype-time" else {}
        for t in plan:
            i = t.index
            trial = client.get(f"/api/s/{token}/trial/{i}").json()
            images = trial.pop("images")
            display = exposures[i] if protocol == "hype-time" else None if protocol == "hype-inf" else 1000
            assert trial == {"index": i, "practice": t.kind == "practice", "total": 9, "done": False,
                             "display_ms": display, "mask_ms": 200 if protocol == "hype-time" else 0}
            assert len(images) == (1 if single else 2)
            for url in images + images[:1]:  # the first image twice: a re-view
                r = client.get(url)
                assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
            body = {"index": i, "answer": answers[i], "response_ms": 10.0 + i, "onset1": 1.5}
            ack = client.post(f"/api/s/{token}/answer", json=body).json()
            done = i == 8
            feedback = None
            if t.kind == "practice":
                feedback = {"correct": correct[i], "truth": "fake" if t.fake_slot else "real"} if single \
                    else {"correct": correct[i], "fake_slot": t.fake_slot}
            code = ack["completion_code"]
            assert (code is not None) == done
            assert ack == {"index": i, "answer": answers[i], "accepted": True, "next_index": i + 1, "done": done,
                           "feedback": feedback, "completion_code": code,
                           "redirect_url": f"https://example.org/done?c={code}" if done else None}
            assert client.post(f"/api/s/{token}/answer", json=body).json() == ack, "a retry gets the same ack"
            assert client.post(f"/api/s/{token}/answer", json={**body, "answer": wrong[answers[i]]}).status_code == 409
            for url, detail in ((images[0], "no such image (images are served only while their trial is open)"),
                                (f"/api/s/{token}/img/nope", "no such image (images are served only while their trial is open)"),
                                ("/api/s/nope/img/nope", "no such session")):
                r = client.get(url)
                assert (r.status_code, r.json()["detail"]) == (404, detail)
    rows = _plan(engine)
    for t in rows:
        judged_real = (t.answer == "real") if single else not correct[t.index]
        assert (t.answer, t.correct, t.judged_real) == (answers[t.index], correct[t.index], judged_real)
        assert (t.views, t.fetches1, t.fetches2) == (1, 2, 0 if single else 1)
        assert (t.response_ms, t.onset1, t.offset1, t.skip_reason) == (10.0 + t.index, 1.5, None, None)
        assert t.exposure_ms == exposures.get(t.index) and t.answered_at is not None
    with engine.connect() as conn:
        assert conn.execute(select(Session.next_index, Session.completed_at.is_not(None))).one() == (9, True)
    engine.dispose()


@pytest.mark.slow
def test_lean_client_load_loses_and_duplicates_nothing(db_url, make_study, live_server) -> None:
    make_study(trials=4, practice=1, vigilance=1)
    server = live_server()
    result = asyncio.run(run_participants(server.url, "s1", 40, Pace(check=True), lean=True, timeout=60))
    assert result.errors == [] and result.finished == 40
    acked = {(t, i): a for t, i, a in result.acks}
    assert len(result.acks) == len(acked) == 40 * 6
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Session.token, Trial.index, Trial.answer, Trial.fetches1, Trial.views)
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

    from tests.study.conftest import schema_url

    schema = f"p2p_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(postgres_base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = None
    try:
        engine = make_engine(f"{schema_url(postgres_base, schema)}&application_name={app}")
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
            drop_connections()  # the first request after the drop
            check = client.post("/api/studies/s1/check", json=arrival)
            assert check.status_code == 200 and check.json()["status"] == "resume"
            drop_connections()  # an answer
            assert client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "1"}).json()["accepted"]
            drop_connections()  # a trial
            trial = client.get(f"/api/s/{token}/trial/1")
            assert trial.status_code == 200
            drop_connections()  # an image (the same)
            assert client.get(trial.json()["images"][0]).status_code == 200


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
