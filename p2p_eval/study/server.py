"""The study's web app (FastAPI): participant pages and API, admin API behind bearer tokens.

Participant URL: ``/s/NAME`` with MTurk, Prolific or no parameters (routes and payloads: docs/studies.md).  Admin
endpoints need ``Authorization: Bearer TOKEN``: the study's token, or the server token (``P2P_STUDY_ADMIN_TOKEN``
or ``admin_token``; also creates studies).  Pages carry a CSP without inline scripts; API answers are no-store.
Each participant request is one short transaction (:mod:`p2p_eval.study.service`), one at a time per process
(:class:`WriterLock`): on SQLite on the event loop while the lock is free, else on the database thread.
"""

from __future__ import annotations

import asyncio
import fcntl
import hmac
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from p2p_eval.errors import UserError
from p2p_eval.study import service
from p2p_eval.study.images import cached, render
from p2p_eval.study.models import Algorithm, Session, Study, Trial
from p2p_eval.study.plan import StudySpec, create_study, token_hash
from p2p_eval.study.store import make_engine, parse_url, sqlite_file

STATIC = Path(__file__).parent / "static"
CSP = "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors *; form-action *"
router = APIRouter()


def auto_workers(dialect: str) -> int:
    """``study serve --workers auto``: one process on SQLite (faster in ``reports/bench.md``), two on a server
    database, never more than the CPUs."""
    return 1 if dialect == "sqlite" else max(1, min(2, os.cpu_count() or 1))


class Database:
    """Runs the app's calls on its database (see the module docstring for where each runs)."""

    def __init__(self, engine: Engine, server_token: str | None) -> None:
        self.engine, self.server_token, self.catalog = engine, server_token, service.Catalog()
        self.sqlite, self.writer = engine.dialect.name == "sqlite", WriterLock.for_engine(engine)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="study-db")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(connection, catalog, *args)`` in one transaction; a refusal as its JSON response."""
        if self.sqlite and self.writer.acquire(blocking=False):
            try:
                return self._transaction(fn, args)
            finally:
                self.writer.release()
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._locked, self._transaction, fn, args)

    async def job(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Blocking work that opens its own connections (study creation, export), under the writer lock, in a thread."""
        return await run_in_threadpool(self._locked, fn, *args)

    def _locked(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self.writer:
            return fn(*args)

    def _transaction(self, fn: Callable[..., Any], args: tuple) -> Any:
        """A transaction whose connection the database dropped (pooled connections are not pinged) runs again."""
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    return fn(conn, self.catalog, *args)
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
            except service.Rejected as exc:
                reason = {"reason": exc.reason} if exc.reason else {}
                return JSONResponse({"detail": str(exc), **reason}, status_code=exc.status)
            except UserError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=400)
        raise AssertionError("unreachable")


def create_app(db: str | Engine, admin_token: str | None = None) -> FastAPI:
    """The app over database URL (or engine) ``db``; ``admin_token`` enables study creation over HTTP."""
    engine = make_engine(db) if isinstance(db, str) else db
    database = Database(engine, admin_token or os.environ.get("P2P_STUDY_ADMIN_TOKEN") or None)
    app = FastAPI(title="p2p-eval perceptual study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.db = engine, database
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    return app


def _answer_json(found: Any) -> Response:
    return found if isinstance(found, Response) else JSONResponse(found)


@router.get("/", include_in_schema=False)
def root() -> Response:
    return Response("p2p-eval perceptual study server: participants open /s/STUDY_NAME\n", media_type="text/plain")


@router.get("/s/{name}", include_in_schema=False)
def page(name: str) -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> RedirectResponse:
    return RedirectResponse("/static/favicon.svg")


@router.get("/api/studies/{name}")
async def info(name: str, request: Request) -> Any:
    return await request.app.state.db.run(service.study_info, name)


async def _arrival(request: Request) -> service.Arrival | Response:
    """The participant's arrival from the request body (and its User-Agent), or a 422 response."""
    if isinstance(body := await _json(request), Response):
        return body
    fields = {k: body.get(k) for k in service.Arrival.__dataclass_fields__}
    for key in ("screen_w", "screen_h"):
        fields[key] = fields[key] if isinstance(fields[key], int) and not isinstance(fields[key], bool) else None
    fields["consent"] = fields["consent"] is True
    for key, value in fields.items():
        if key not in ("screen_w", "screen_h", "consent") and value is not None and not isinstance(value, str):
            return JSONResponse({"detail": f"{key} must be a string"}, status_code=422)
    fields["user_agent"] = request.headers.get("user-agent")
    return service.Arrival(**fields)


@router.post("/api/studies/{name}/check")
async def check(name: str, request: Request) -> Any:
    found = await _arrival(request)
    return found if isinstance(found, Response) else await request.app.state.db.run(service.check_arrival, name, found)


@router.post("/api/studies/{name}/sessions")
async def start(name: str, request: Request) -> Any:
    found = await _arrival(request)
    return found if isinstance(found, Response) else await request.app.state.db.run(service.open_session, name, found)


async def trial(request: Request) -> Response:
    """The next trial, its images encoded first (outside the transaction); one that cannot be is skipped."""
    db, token = request.app.state.db, request.path_params["token"]
    try:
        index = int(request.path_params["index"])
    except ValueError:
        return JSONResponse({"detail": "the trial index must be an integer"}, status_code=422)
    while True:
        found = await db.run(service.open_trial, token, index, _ready)
        if not isinstance(found, service.TrialFiles):
            return _answer_json(found)
        try:
            for path, broken in found.files:
                await run_in_threadpool(render, path, broken, found.processing)
        except UserError as exc:
            moved = await db.run(service.skip_trial, token, index, str(exc))
            if isinstance(moved, Response) or moved["done"]:
                return _answer_json(moved)
            index = moved["next_index"]


async def image(request: Request) -> Response:
    found = await request.app.state.db.run(service.fetch_image, request.path_params["token"],
                                   request.path_params["image_token"])
    if isinstance(found, Response):
        return found
    try:
        data = cached(*found) or await run_in_threadpool(render, *found)
    except UserError:
        return JSONResponse({"detail": "image unavailable: fetch the trial again"}, status_code=410)
    return Response(data, media_type=found[2].media_type, headers={"Cache-Control": "no-store"})


async def answer(request: Request) -> Response:
    if isinstance(body := await _json(request), Response):
        return body
    return _answer_json(await request.app.state.db.run(service.store_answer, request.path_params["token"], body))


router.add_route("/api/s/{token}/trial/{index}", trial, methods=["GET"])
router.add_route("/api/s/{token}/img/{image_token}", image, methods=["GET"])
router.add_route("/api/s/{token}/answer", answer, methods=["POST"])


def _authorized(request: Request, study: Any) -> Response | None:
    """None when the request carries the server token or ``study``'s admin token, else its 401 / 403."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return JSONResponse({"detail": "admin token required (Authorization: Bearer TOKEN)"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    server_token = request.app.state.db.server_token
    ok = server_token is not None and hmac.compare_digest(given.encode(), server_token.encode())
    if study is not None:
        ok = ok or hmac.compare_digest(token_hash(given), study.token_sha256)
    return None if ok else JSONResponse({"detail": "wrong admin token"}, status_code=403)


@router.post("/api/admin/studies")
async def admin_create(request: Request) -> Any:
    if (denied := _authorized(request, None)) is not None:
        return denied
    if isinstance(body := await _json(request, ADMIN_BODY_LIMIT), Response):
        return body
    try:
        spec, notes = StudySpec(**body), []
        study, token = await request.app.state.db.job(create_study, request.app.state.engine, spec, notes)
    except TypeError as exc:
        return JSONResponse({"detail": f"bad study fields: {exc}"}, status_code=422)
    except UserError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    return {"name": study.name, "admin_token": token, "participant_path": f"/s/{study.name}", "notes": notes}


def _progress(conn: Any, _catalog: Any, name: str) -> tuple[Any, dict[str, Any] | None]:
    """(study row or None, its progress: answers, sessions and completed sessions per algorithm)."""
    if (study := conn.execute(select(Study.__table__).where(Study.name == name)).first()) is None:
        return None, None
    rows = conn.execute(select(Algorithm.name, func.count(Session.id), func.count(Session.completed_at))
                        .join(Session, Session.algorithm_id == Algorithm.id, isouter=True)
                        .where(Algorithm.study_id == study.id).group_by(Algorithm.name)).all()
    answers = conn.scalar(select(func.count(Trial.id)).join(Session, Trial.session_id == Session.id)
                          .where(Session.study_id == study.id, Trial.answer.is_not(None)))
    return study, {"study": study.name, "answers": answers,
                   "algorithms": {alg: {"sessions": n, "completed": c} for alg, n, c in rows}}


async def _admin_study(request: Request, name: str) -> tuple[Any, Any]:
    """(study row, its progress), or (None, the refusal: 401 / 403 / 404)."""
    study, progress = await request.app.state.db.run(_progress, name)
    if (denied := _authorized(request, study)) is not None:
        return None, denied
    if study is None:
        return None, JSONResponse({"detail": "no such study"}, status_code=404)
    return study, progress


@router.get("/api/admin/studies/{name}/progress")
async def progress(name: str, request: Request) -> Any:
    return (await _admin_study(request, name))[1]


@router.get("/api/admin/studies/{name}/export")
async def export(name: str, request: Request, format: str = "csv") -> Any:  # noqa: A002 - query parameter name
    from p2p_eval.study.analysis import analyse, study_frame

    study, denied = await _admin_study(request, name)
    if study is None:
        return denied
    if format not in ("csv", "json"):
        return JSONResponse({"detail": "format must be csv or json"}, status_code=422)
    engine = request.app.state.engine
    if format == "json":
        return await request.app.state.db.job(analyse, engine, study.name)
    frame = (await request.app.state.db.job(study_frame, engine, study.name))[2]
    return Response(frame.to_csv(index=False), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{study.name}_trials.csv"'})


class SecurityHeaders:
    """Pure ASGI middleware: CSP, nosniff, no referrer on every response; no caching of API answers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
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


#: Largest request bodies read, in bytes: a participant's requests are a few hundred bytes; a study spec more.
PARTICIPANT_BODY_LIMIT = 16 * 1024
ADMIN_BODY_LIMIT = 1024 * 1024


async def _json(request: Request, limit: int = PARTICIPANT_BODY_LIMIT) -> dict[str, Any] | Response:
    """The request's JSON object body, a 413 response past ``limit`` bytes (read no further), or a 422 response."""
    too_large = JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
    if (declared := request.headers.get("content-length", "")).isdigit() and int(declared) > limit:
        return too_large
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            return too_large
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        return JSONResponse({"detail": "body must be JSON"}, status_code=422)
    if not isinstance(body, dict):
        return JSONResponse({"detail": "body must be a JSON object"}, status_code=422)
    return body


class WriterLock:
    """Serialises this process's transactions: a thread lock and, on an SQLite file, ``flock`` on
    ``FILE-p2plock`` across worker processes (woken when free, where SQLite's busy handler polls)."""

    def __init__(self, path: Path | None) -> None:
        self._thread = threading.Lock()
        self._fd = None if path is None else os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @classmethod
    def for_engine(cls, engine: Engine) -> WriterLock:
        file = sqlite_file(parse_url(engine.url.render_as_string(hide_password=False)))
        return cls(None if file is None else Path(f"{file}-p2plock"))

    def acquire(self, blocking: bool = True) -> bool:
        if not self._thread.acquire(blocking):
            return False
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            self._thread.release()
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread.release()

    def __enter__(self) -> None:  # the lock, waited for
        self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _ready(path: Path, broken: bool, processing: Any) -> bool:
    """Whether an image's served bytes are encoded already (a missing file is not ready: the render reports it)."""
    try:
        return cached(path, broken, processing) is not None
    except UserError:
        return False


def app_from_env() -> FastAPI:
    """The app over ``$P2P_STUDY_DB``: the uvicorn factory of several worker processes."""
    return create_app(os.environ["P2P_STUDY_DB"])
