"""The study server under uvicorn on 127.0.0.1 (``p2p-eval study serve`` in a subprocess): 100 participants
at once, then SIGKILL mid-study and restart; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession

from tests.study.loadgen import LoadResult, Pace, run_participants
from p2p_eval.study.models import Session, Trial
from p2p_eval.study.store import make_engine

pytestmark = pytest.mark.slow


def stored_answers(db_url: str) -> dict[tuple[str, int], str]:
    engine = make_engine(db_url)
    try:
        with OrmSession(engine) as db:
            rows = db.execute(select(Session.token, Trial.index, Trial.answer).join(Session, Trial.session_id == Session.id)
                              .where(Trial.answer.is_not(None))).all()
    finally:
        engine.dispose()
    return {(token, index): answer for token, index, answer in rows}


def test_hundred_participants_at_once(db_url, make_study, live_server) -> None:
    make_study(trials=3, practice=1, vigilance=1)
    server = live_server()
    result = asyncio.run(run_participants(server.url, "s1", 100, Pace(images=False), timeout=60))
    assert result.errors == [] and result.finished == 100
    assert result.elapsed < 120
    stored = stored_answers(db_url)
    acked = {(t, i): a for t, i, a in result.acks}
    assert len(result.acks) == len(acked) == 100 * 5, "every answer acknowledged exactly once"
    assert stored == acked, "zero lost, zero extra answers"
    engine = make_engine(db_url)
    try:
        with OrmSession(engine) as db:
            per_alg = db.execute(select(func.count()).select_from(Session).group_by(Session.algorithm_id)).scalars().all()
            assert sorted(per_alg) == [50, 50]
            assert db.scalar(select(func.count()).select_from(Session).where(Session.completed_at.is_not(None))) == 100
    finally:
        engine.dispose()


def test_two_server_processes_lose_and_duplicate_nothing(db_url, make_study) -> None:
    """``study serve --workers 2``: two processes share the port (and, on SQLite, take turns at the file through
    the lock beside it); every answer is stored once and the algorithms stay balanced."""
    from tests.study.loadgen import LiveServer

    make_study(trials=3, practice=1)
    server = LiveServer(db_url, args=("--workers", "2")).start()
    try:
        result = asyncio.run(run_participants(server.url, "s1", 40, timeout=60))
    finally:
        server.stop()
    assert result.errors == [] and result.finished == 40
    acked = {(t, i): a for t, i, a in result.acks}
    assert len(result.acks) == len(acked) == 40 * 4
    assert stored_answers(db_url) == acked
    engine = make_engine(db_url)
    try:
        with OrmSession(engine) as db:
            per_alg = db.execute(select(func.count()).select_from(Session).group_by(Session.algorithm_id)).scalars().all()
    finally:
        engine.dispose()
    assert sorted(per_alg) == [20, 20]


def test_sigkill_keeps_every_acknowledged_answer(db_url, make_study, live_server) -> None:
    make_study(trials=10, practice=2)
    first = live_server()
    result = LoadResult()
    runner = threading.Thread(target=lambda: asyncio.run(
        run_participants(first.url, "s1", 20, Pace(images=False), timeout=10, result=result)))
    runner.start()
    deadline = time.monotonic() + 60
    while len(result.acks) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.kill()  # mid-study: participants are still answering
    runner.join(60)
    assert not runner.is_alive() and 60 <= len(result.acks) < 20 * 12 and result.errors
    stored = stored_answers(db_url)
    for token, index, value in result.acks:
        assert stored.get((token, index)) == value, "an acknowledged answer was lost"
    second = live_server()  # restart on the same database; everyone resumes and finishes
    rest = asyncio.run(run_participants(second.url, "s1", 20, Pace(images=False), seed=1, timeout=30))
    assert rest.errors == [] and rest.finished == 20
    final = stored_answers(db_url)
    assert len(final) == 20 * 12
    for token, index, value in result.acks:
        assert final[(token, index)] == value


def test_concurrent_duplicate_answers_store_once(db_url, make_study, live_server) -> None:
    """The same answer POSTed three times at once (a nervous retry): three identical acks, one stored row."""
    import httpx

    make_study(trials=4, practice=1)
    server = live_server()

    async def participant(client: httpx.AsyncClient, pid: str) -> list[dict]:
        state = (await client.post(f"{server.url}/api/studies/s1/sessions", json={"PROLIFIC_PID": pid, "SESSION_ID": "x"})).json()
        acks = []
        for index in range(state["total"]):
            await client.get(f"{server.url}/api/s/{state['session']}/trial/{index}")
            body = {"index": index, "answer": "2", "response_ms": 1.0}
            replies = await asyncio.gather(*[client.post(f"{server.url}/api/s/{state['session']}/answer", json=body)
                                             for _ in range(3)])
            assert [r.status_code for r in replies] == [200] * 3
            assert replies[0].json() == replies[1].json() == replies[2].json()
            acks.append(replies[0].json())
        return acks

    async def main() -> list[list[dict]]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*[participant(client, f"d{i}") for i in range(10)])

    results = asyncio.run(main())
    assert all(acks[-1]["done"] for acks in results)
    stored = stored_answers(db_url)
    assert len(stored) == 10 * 5 and set(stored.values()) == {"2"}
