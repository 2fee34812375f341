"""Test and benchmark tools for the study server: participants answering at random over HTTP, a server
subprocess, and folders of noise images; used by the load tests and ``benchmarks/perf/study_load.py``.

Each participant behaves like the page: start (or resume) a session, then for each trial fetch it, fetch
its images, answer, and keep every acknowledgement it received (:func:`run_participant`).  Uses httpx, or
:class:`LeanClient` (a minimal keep-alive HTTP/1.1 client on asyncio streams) where the load generator's own
CPU time matters: the load benchmark runs on the server's machine, and httpx spends several times the server's
CPU per request there.

Every request's latency is kept per request type (``start``, ``check``, ``trial``, ``image``, ``answer``);
:attr:`Pace.pause` makes a participant answer on a fixed cadence (the open-loop benchmark: 2 s between answers).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

@dataclass
class LoadResult:
    """What the participants saw: acknowledged answers, answer latencies (s, retries included), errors,
    finished sessions, and how many requests were retried after a connection error."""

    acks: list[tuple[str, int, str]] = field(default_factory=list)  # (session token, trial index, answer)
    latencies: list[float] = field(default_factory=list)
    by_type: dict[str, list[float]] = field(default_factory=dict)  # request type -> latencies (s), retries included
    errors: list[str] = field(default_factory=list)
    finished: int = 0
    retries: int = 0
    elapsed: float = 0.0


class LeanResponse:
    """The parts of an httpx response that :func:`run_participant` uses."""

    def __init__(self, status_code: int, content: bytes, url: str) -> None:
        self.status_code, self.content, self.url = status_code, content, url

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code} for {self.url}: {self.text[:200]}")


class LeanClient:
    """A minimal HTTP/1.1 client for one host: keep-alive connections on asyncio streams, JSON bodies,
    Content-Length or chunked responses.  ``request(method, url, json=...)`` as httpx's; an ``OSError`` (or
    :class:`asyncio.IncompleteReadError`, :class:`TimeoutError`) where httpx raises a ``TransportError``."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()

    async def request(self, method: str, url: str, json: Any = None) -> LeanResponse:
        return await asyncio.wait_for(self._request(method, url, json), self.timeout)

    async def get(self, url: str) -> LeanResponse:
        return await self.request("GET", url)

    async def post(self, url: str, json: Any = None) -> LeanResponse:
        return await self.request("POST", url, json=json)

    async def _request(self, method: str, url: str, body: Any) -> LeanResponse:
        parts = urlsplit(url)
        key = (parts.hostname or "127.0.0.1", parts.port or 80)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        data = b"" if body is None else jsonlib.dumps(body).encode()
        head = f"{method} {target} HTTP/1.1\r\nHost: {key[0]}:{key[1]}\r\nContent-Length: {len(data)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        idle = self._idle.setdefault(key, [])
        reused = bool(idle)
        reader, writer = idle.pop() if idle else await asyncio.open_connection(*key)
        try:
            writer.write(head.encode() + b"\r\n" + data)
            status, content, keep = await self._response(reader)
        except (OSError, asyncio.IncompleteReadError):
            writer.close()
            if not reused:
                raise
            reader, writer = await asyncio.open_connection(*key)  # the server closed an idle connection: once more
            writer.write(head.encode() + b"\r\n" + data)
            status, content, keep = await self._response(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            idle.append((reader, writer))
        else:
            writer.close()
        return LeanResponse(status, content, url)

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        keep = headers.get("connection", "").lower() != "close"
        if "content-length" in headers:
            return status, await reader.readexactly(int(headers["content-length"])), keep
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return status, b"".join(chunks), keep
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        return status, await reader.read(), False


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        import httpx
    except ImportError:
        return (OSError, asyncio.IncompleteReadError, TimeoutError)
    return (httpx.TransportError, OSError, asyncio.IncompleteReadError, TimeoutError)


async def _request(client, method: str, url: str, result: LoadResult, attempts: int = 4, kind: str | None = None,  # noqa: ANN001, ANN202
                   **kwargs):
    """One request, retried on connection errors as the page does (answers are idempotent); its latency
    (retries included) is kept under ``kind``."""
    errors = _transport_errors()
    start = time.perf_counter()
    for attempt in range(attempts):
        try:
            response = await client.request(method, url, **kwargs)
            if kind is not None:
                result.by_type.setdefault(kind, []).append(time.perf_counter() - start)
            return response
        except errors:
            if attempt == attempts - 1:
                raise
            result.retries += 1
            await asyncio.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


@dataclass
class Pace:
    """How a participant runs: ``images``: fetch each trial's images; ``check``: ``POST .../check`` first, as
    the page does before its instructions; ``pause`` > 0: one trial every ``pause`` seconds (fetch, images,
    answer), started on that cadence whatever the server's latency, after a random offset in [0, ``pause``)
    (open loop); ``ramp``: arrive at a random moment in the first ``ramp`` seconds."""

    images: bool = True
    check: bool = False
    pause: float = 0.0
    ramp: float = 0.0


async def run_participant(client, base: str, study: str, pid: str, result: LoadResult, rng: random.Random,  # noqa: ANN001
                          pace: Pace) -> None:
    """One participant (Prolific id ``pid``) as the page runs it: start or resume the session, then for each
    trial fetch it, fetch its images and post an answer drawn at random with fixed timings."""
    if pace.ramp > 0:
        await asyncio.sleep(rng.random() * pace.ramp)
    body = {"PROLIFIC_PID": pid, "SESSION_ID": "load", "consent": True}
    if pace.check:
        r = await _request(client, "POST", f"{base}/api/studies/{study}/check", result, kind="check", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"check of {pid}: {r.status_code} {r.text}")
    r = await _request(client, "POST", f"{base}/api/studies/{study}/sessions", result, kind="start", json=body)
    r.raise_for_status()
    state = r.json()
    token, index, total = state["session"], state["next_index"], state["total"]
    choices = ("1", "2") if state["protocol"] in ("2afc", "sequential") else ("real", "fake")
    loop = asyncio.get_running_loop()
    due = loop.time() + (rng.random() * pace.pause if pace.pause > 0 else 0.0)
    while index < total:
        if pace.pause > 0:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += pace.pause
        trial = await _request(client, "GET", f"{base}/api/s/{token}/trial/{index}", result, kind="trial")
        trial.raise_for_status()
        if trial.json()["done"]:  # the server skipped the remaining trials (an image it could not serve)
            break
        index = trial.json()["index"]  # later than asked when the server skipped a trial
        if pace.images:
            for url in trial.json()["images"]:
                (await _request(client, "GET", base + url, result, kind="image")).raise_for_status()
        value = rng.choice(choices)
        body = {"index": index, "answer": value, "onset1": 0.0, "offset1": 1000.0, "response_ms": 500.0}
        start = time.perf_counter()
        r = await _request(client, "POST", f"{base}/api/s/{token}/answer", result, kind="answer", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"answer {index} of {pid}: {r.status_code} {r.text}")
        result.latencies.append(time.perf_counter() - start)
        result.acks.append((token, index, value))
        index = r.json()["next_index"]
    result.finished += 1


async def run_participants(base: str, study: str, count: int, pace: Pace | None = None, seed: int = 0,
                           timeout: float = 60.0, result: LoadResult | None = None, lean: bool = False) -> LoadResult:
    """Run ``count`` participants at once (ids ``p{i}``) at ``pace``; a participant stops at its first error.
    ``lean``: through :class:`LeanClient` instead of httpx."""
    result = result if result is not None else LoadResult()
    if lean:
        client_cm: Any = LeanClient(timeout=timeout)
    else:
        import httpx

        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        client_cm = httpx.AsyncClient(timeout=timeout, limits=limits)
    start = time.perf_counter()
    async with client_cm as client:
        rngs = [random.Random(seed * 100_003 + i) for i in range(count)]
        tasks = [run_participant(client, base, study, f"p{i}", result, rng, pace or Pace()) for i, rng in enumerate(rngs)]
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                result.errors.append(f"{type(outcome).__name__}: {outcome}")
    result.elapsed = time.perf_counter() - start
    return result


def open_trial(client, token: str, index: int):  # noqa: ANN001, ANN201 - a TestClient and its response
    """GET trial ``index`` of session ``token`` and each of its images, as the page does (a synchronous client,
    e.g. FastAPI's TestClient); returns the trial's response.  An answer to a trial whose images were never
    fetched is stored as unseen and left out of the report's scores."""
    r = client.get(f"/api/s/{token}/trial/{index}")
    if r.status_code == 200 and not r.json()["done"]:
        for url in r.json()["images"]:
            assert client.get(url).status_code == 200, url
    return r


def write_noise_folders(root: Path, names: tuple[str, ...] = ("real", "alg_a", "alg_b"), count: int = 12,
                        side: int = 32, seed: int = 0) -> dict[str, Path]:
    """One folder per name under ``root`` with ``count`` random-noise PNGs (1.png ..) of side x side: the
    stand-in real / fake image sets of the load tests and the load benchmark."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    dirs = {}
    for name in names:
        folder = root / name
        folder.mkdir()
        for i in range(1, count + 1):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        dirs[name] = folder
    return dirs


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``p2p-eval study serve`` in a subprocess on a free loopback port; ``source``: a checkout whose
    ``p2p_eval`` runs instead of this one (the benchmark's baseline), ``args``: more ``serve`` options."""

    def __init__(self, db_url: str, source: Path | None = None, args: tuple[str, ...] = ()) -> None:
        self.db_url, self.port, self.proc = db_url, free_port(), None
        self.source, self.args = source, tuple(args)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> LiveServer:
        """Start and wait until it answers."""
        import httpx

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        root = self.source if self.source is not None else Path(__file__).resolve().parents[2]
        if self.source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(self.source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.proc = subprocess.Popen([sys.executable, "-m", "p2p_eval.cli", "study", "serve", "--db", self.db_url,
                                      "--port", str(self.port), *self.args], cwd=root, env=env,
                                     stdout=subprocess.DEVNULL,  # its banner would mix into the caller's report
                                     start_new_session=True)  # a process group: kill / stop reach every worker
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"study server exited at start (exit {self.proc.returncode})")
        self.stop()
        raise RuntimeError(f"study server did not start in {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL to the server and its worker processes: no shutdown handler runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (uvicorn's supervisor stops its workers), then SIGKILL to all of them after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
