"""The study's web app (FastAPI): participant pages and API, admin API behind bearer tokens.

Participant URL: ``/s/NAME`` with MTurk (``workerId``, ``assignmentId``, ``hitId``), Prolific
(``PROLIFIC_PID``, ``STUDY_ID``, ``SESSION_ID``) or no parameters.  Admin endpoints need
``Authorization: Bearer TOKEN``: the study's token (printed by ``study create``) for its progress and
export; creating a study over HTTP needs the server token (``P2P_STUDY_ADMIN_TOKEN`` or ``admin_token``).
Every page carries a Content-Security-Policy that forbids inline scripts, so user strings can never run.
Every API answer, images included, is ``Cache-Control: no-store``: a trial's images are served only while
the trial is open, and a second request for one of them is counted as a re-view.

Speed: the participant's requests are short transactions.  On SQLite they run on the event loop itself
whenever this process's writer lock is free (it always is with one server process): SQLite serialises its
writers anyway, and handing each transaction to a thread cost more than the transaction (the hand-over and
the GIL's switching between two busy threads; ``benchmarks/perf/study_load.py``).  When the lock is taken (an
admin export, another worker process) the request waits for it on a database thread instead, never on the
event loop and never in SQLite's busy handler, which would give the tail of a lock convoy.  A server database
gets a small pool of threads (:data:`DB_THREADS`).  The trial, image and answer requests use SQLAlchemy Core
with the studies' fixed settings cached per process (:class:`p2p_eval.study.service.Catalog`), and every
served image is encoded once (:mod:`p2p_eval.study.images`), outside any transaction.  On PostgreSQL their
fixed statements go through psycopg's own cursor, and the trial and image requests (one write each) run in
autocommit (:mod:`p2p_eval.study.driver`): 20-36% less server CPU per answer than through SQLAlchemy in
two A/B runs of ``benchmarks/perf/study_load.py`` against 899ae5e.
"""

from __future__ import annotations

import asyncio
import fcntl
import hmac
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session as DB

from p2p_eval.errors import UserError
from p2p_eval.study import driver, service
from p2p_eval.study.images import cached, render
from p2p_eval.study.models import Algorithm, Session, Study, Trial
from p2p_eval.study.plan import StudySpec, create_study, token_hash
from p2p_eval.study.store import make_engine, session_factory

STATIC = Path(__file__).parent / "static"
DB_THREADS = 4  # database threads for a server database (more only add switching between threads); SQLite gets one
CSP = "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors *; form-action *"


def auto_workers(dialect: str) -> int:
    """``study serve --workers auto`` for a database of SQLAlchemy dialect ``dialect``: one process on SQLite
    (more take turns at the file; one was faster: 658 vs 421 answers/s in ``reports/bench.md``), two on a
    server database (PostgreSQL: 431 vs 375 answers/s there, the load generator on the same 2 cores), never
    more than the machine's CPUs."""
    if dialect == "sqlite":
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def create_app(db: str | Engine, admin_token: str | None = None) -> FastAPI:
    """The app over database URL (or engine) ``db``; ``admin_token`` enables study creation over HTTP."""
    engine = make_engine(db) if isinstance(db, str) else db
    factory = session_factory(engine)
    server_token = admin_token or os.environ.get("P2P_STUDY_ADMIN_TOKEN") or None
    sqlite = engine.dialect.name == "sqlite"
    executor = ThreadPoolExecutor(max_workers=1 if sqlite else DB_THREADS, thread_name_prefix="study-db")
    catalog = service.Catalog()
    held = driver.ThreadConnections(engine, driver.Statements(engine, service.HOT_STATEMENTS)) \
        if driver.supports(engine) else None
    app = FastAPI(title="p2p-eval perceptual study", docs_url=None, redoc_url=None, openapi_url=None,
                  on_startup=[] if sqlite else [partial(_open_connections, engine, executor)],
                  on_shutdown=[partial(_shut_down, executor, held)])
    app.state.engine = engine
    app.state.catalog = catalog

    writer = WriterLock.for_engine(engine)

    @contextmanager
    def transaction() -> Iterator[DB]:
        with writer.held(), factory() as db, db.begin():
            yield db

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(db, *args)`` in one ORM transaction (the writer lock held by the caller); a refusal as its JSON response."""

        def once() -> Any:
            with factory() as db, db.begin():
                return fn(db, *args)

        return _answered(once)

    def core(fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(connection, catalog, *args)`` in one Core transaction (the writer lock held by the caller); a
        refusal as its JSON response.  On PostgreSQL on the database thread's own connection, as the hot
        requests: a burst of arrivals then opens no new connection."""

        def once() -> Any:
            if held is not None:
                with held.transaction() as fast:
                    return fn(fast.sqlalchemy, catalog, *args)
            with engine.begin() as conn:
                return fn(conn, catalog, *args)

        return _answered(once)

    def hot(fn: Callable[..., Any], *args: Any, autocommit: bool = False) -> Any:
        """:func:`core` for the participant's hot requests: on PostgreSQL their fixed statements go through
        psycopg on the database thread's own connection (:mod:`p2p_eval.study.driver`), and with ``autocommit``
        (requests that write one statement) without ``BEGIN`` and ``COMMIT``."""
        if held is None:
            return core(fn, *args)

        def once() -> Any:
            with held.transaction(autocommit) as conn:
                return fn(conn, catalog, *args)

        return _answered(once)

    def locked(run: Callable[..., Any], *args: Any) -> Any:
        with writer.held():
            return run(*args)

    async def db_job(run: Callable[..., Any], *args: Any) -> Any:
        """``run`` (:func:`call` or :func:`core`) with ``args``: on the event loop when SQLite's writer lock
        is free at once, else on a database thread (which waits for the lock)."""
        if sqlite and writer.try_acquire():
            try:
                return run(*args)
            finally:
                writer.release()
        return await asyncio.get_running_loop().run_in_executor(executor, locked, run, *args)

    def answer_json(found: Any) -> Response:
        return found if isinstance(found, Response) else JSONResponse(found)

    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return Response("p2p-eval perceptual study server: participants open /s/STUDY_NAME\n", media_type="text/plain")

    @app.get("/s/{name}", include_in_schema=False)
    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/studies/{name}")
    async def info(name: str) -> Any:
        return await db_job(call, service.study_info, name)

    async def arrival(request: Request) -> service.Arrival | Response:
        body = await _json(request)
        if isinstance(body, Response):
            return body
        fields = {k: body.get(k) for k in service.Arrival.__dataclass_fields__}
        for key in ("screen_w", "screen_h"):
            fields[key] = fields[key] if isinstance(fields[key], int) and not isinstance(fields[key], bool) else None
        for key, value in fields.items():
            if key not in ("screen_w", "screen_h") and value is not None and not isinstance(value, str):
                return JSONResponse({"detail": f"{key} must be a string"}, status_code=422)
        fields["user_agent"] = request.headers.get("user-agent")
        return service.Arrival(**fields)

    async def on_arrival(name: str, request: Request, action: Any) -> Any:
        """Parse the participant's arrival, then run ``action`` on (name, arrival) through ``core``."""
        found = await arrival(request)
        if isinstance(found, Response):
            return found
        return await db_job(core, action, name, found)

    @app.post("/api/studies/{name}/check")
    async def check(name: str, request: Request) -> Any:
        return await on_arrival(name, request, service.check_arrival)

    @app.post("/api/studies/{name}/sessions")
    async def start(name: str, request: Request) -> Any:
        return await on_arrival(name, request, service.open_session)

    async def trial(request: Request) -> Response:
        """The next trial; a trial whose image cannot be rendered is skipped (reason stored) for the next one.
        Its images are encoded (once, outside the transaction) before the trial is opened."""
        token = request.path_params["token"]
        try:
            index = int(request.path_params["index"])
        except ValueError:
            return JSONResponse({"detail": "the trial index must be an integer"}, status_code=422)
        while True:
            found = await db_job(partial(hot, autocommit=True), service.open_trial, token, index, _ready)
            if not isinstance(found, service.TrialFiles):
                return answer_json(found)
            try:
                for path, broken in found.files:
                    await run_in_threadpool(render, path, broken, found.processing)
            except UserError as exc:
                moved = await db_job(call, service.skip_trial, token, index, str(exc))
                if isinstance(moved, Response) or moved["done"]:
                    return answer_json(moved)
                index = moved["next_index"]

    async def image(request: Request) -> Response:
        found = await db_job(partial(hot, autocommit=True), service.fetch_image, request.path_params["token"],
                             request.path_params["image_token"])
        if isinstance(found, Response):
            return found
        try:
            data = cached(*found)
            if data is None:
                data = await run_in_threadpool(render, *found)
        except UserError:
            return JSONResponse({"detail": "image unavailable: fetch the trial again"}, status_code=410)
        return Response(data, media_type=found[2].media_type, headers={"Cache-Control": "no-store"})

    async def answer(request: Request) -> Response:
        body = await _json(request)
        if isinstance(body, Response):
            return body
        return answer_json(await db_job(hot, service.store_answer, request.path_params["token"], body))

    app.add_route("/api/s/{token}/trial/{index}", trial, methods=["GET"])
    app.add_route("/api/s/{token}/img/{image_token}", image, methods=["GET"])
    app.add_route("/api/s/{token}/answer", answer, methods=["POST"])

    def authorized(request: Request, study: Study | None) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return JSONResponse({"detail": "admin token required (Authorization: Bearer TOKEN)"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        ok = server_token is not None and hmac.compare_digest(given.encode(), server_token.encode())
        if study is not None:
            ok = ok or hmac.compare_digest(token_hash(given), study.token_sha256)
        return None if ok else JSONResponse({"detail": "wrong admin token"}, status_code=403)

    @app.post("/api/admin/studies")
    async def admin_create(request: Request) -> Any:
        denied = authorized(request, None)
        if denied is not None:
            return denied
        body = await _json(request)
        if isinstance(body, Response):
            return body
        try:
            spec, notes = StudySpec(**body), []
            study, token = await _threaded(locked, create_study, engine, spec, notes)
        except TypeError as exc:
            return JSONResponse({"detail": f"bad study fields: {exc}"}, status_code=422)
        except UserError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return {"name": study.name, "admin_token": token, "participant_path": f"/s/{study.name}", "notes": notes}

    def admin_study(request: Request, name: str) -> tuple[Study | None, Response | None]:
        with transaction() as db:
            study = db.scalar(select(Study).where(Study.name == name))
        denied = authorized(request, study)
        if denied is not None:
            return None, denied
        if study is None:
            return None, JSONResponse({"detail": "no such study"}, status_code=404)
        return study, None

    @app.get("/api/admin/studies/{name}/progress")
    def progress(name: str, request: Request) -> Any:
        study, denied = admin_study(request, name)
        if denied is not None:
            return denied
        with transaction() as db:
            rows = db.execute(
                select(Algorithm.name, func.count(Session.id), func.count(Session.completed_at))
                .join(Session, Session.algorithm_id == Algorithm.id, isouter=True)
                .where(Algorithm.study_id == study.id).group_by(Algorithm.name)).all()
            answers = db.scalar(select(func.count(Trial.id)).join(Session, Trial.session_id == Session.id)
                                .where(Session.study_id == study.id, Trial.answer.is_not(None)))
        return {"study": study.name, "answers": answers,
                "algorithms": {alg: {"sessions": n, "completed": c} for alg, n, c in rows}}

    @app.get("/api/admin/studies/{name}/export")
    def export(name: str, request: Request, format: str = "csv") -> Any:  # noqa: A002 - query parameter name
        from p2p_eval.study.analysis import analyse, trials_frame

        study, denied = admin_study(request, name)
        if denied is not None:
            return denied
        if format not in ("csv", "json"):
            return JSONResponse({"detail": "format must be csv or json"}, status_code=422)
        with writer.held():  # every transaction of this process on an SQLite file holds the writer lock
            if format == "json":
                return analyse(engine, study.name)
            frame = trials_frame(engine, study.name)
        csv = frame.to_csv(index=False)
        return Response(csv, media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{study.name}_trials.csv"'})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse("/static/favicon.svg")

    return app


class SecurityHeaders:
    """Pure ASGI middleware: CSP, nosniff, no referrer on every response; no caching of API answers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = scope["path"].startswith("/api/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                if is_api and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _shut_down(executor: ThreadPoolExecutor, held: driver.ThreadConnections | None) -> None:
    """Stop the database threads; their connections go back to the pool.  The server (uvicorn) has let every
    request finish by now, so the threads are idle."""
    executor.shutdown(wait=held is not None)
    if held is not None:
        held.close()


async def _open_connections(engine: Engine, executor: ThreadPoolExecutor) -> None:
    """Open one pooled connection per database thread before the first participant arrives (a server
    database), so that no participant's request waits for a connection to be set up.  Best effort: a database
    that cannot be reached now is reported by the requests that need it."""
    gate = threading.Barrier(DB_THREADS, timeout=30)

    def hold_one() -> None:
        try:
            with engine.connect() as conn:
                conn.execute(select(1))
                gate.wait()  # all threads hold a connection at once: the pool keeps DB_THREADS of them
        except (DBAPIError, threading.BrokenBarrierError):
            gate.abort()

    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(executor, hold_one) for _ in range(DB_THREADS)))


def _answered(transaction: Callable[[], Any]) -> Any:
    """Run ``transaction``; a refusal as its JSON response.  A transaction that failed because the database
    dropped its connection (a server restart: pooled connections are not pinged before use, which would
    cost a round trip per request) rolled back; it runs once more, on a new connection."""
    for attempt in (1, 2):
        try:
            return transaction()
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
        except service.Rejected as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        except UserError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
    raise AssertionError("unreachable")


async def _json(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object body, or a 422 response."""
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"detail": "body must be JSON"}, status_code=422)
    if not isinstance(body, dict):
        return JSONResponse({"detail": "body must be a JSON object"}, status_code=422)
    return body


async def _threaded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking work in the thread pool."""
    return await run_in_threadpool(fn, *args)


class WriterLock:
    """Serialises this server's transactions on an SQLite file: a thread lock within the process, and across
    its worker processes ``flock`` on ``FILE-p2plock`` (a waiting process is woken when the lock is free, where
    SQLite's own busy handler would poll with sleeps of up to 100 ms).  Does nothing for other databases."""

    def __init__(self, path: Path | None) -> None:
        self._thread = threading.Lock()
        self._fd = None if path is None else os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @classmethod
    def for_engine(cls, engine: Engine) -> WriterLock:
        from p2p_eval.study.store import _parse, _sqlite_file

        file = _sqlite_file(_parse(engine.url.render_as_string(hide_password=False)))
        return cls(None if file is None else Path(f"{file}-p2plock"))

    def try_acquire(self) -> bool:
        """Take the lock if it is free now; True when taken."""
        if not self._thread.acquire(blocking=False):
            return False
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._thread.release()
                return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        """The lock, waited for."""
        with self._thread:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)


def _ready(path: Path, broken: bool, processing: Any) -> bool:
    """Whether the served bytes of an image are encoded already (a missing file counts as not ready: the
    render outside the transaction reports it and the trial is skipped)."""
    try:
        return cached(path, broken, processing) is not None
    except UserError:
        return False


def app_from_env() -> FastAPI:
    """The app over ``$P2P_STUDY_DB`` (an uvicorn factory: ``uvicorn --factory p2p_eval.study.server:app_from_env``),
    for several worker processes."""
    return create_app(os.environ["P2P_STUDY_DB"])
