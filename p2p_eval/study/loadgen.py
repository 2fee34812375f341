"""Simulated participants over HTTP and a server subprocess, for the load tests and
``benchmarks/perf/study_load.py``.

Each participant behaves like the page: start (or resume) a session, then for each trial fetch it, fetch
its images, answer, and keep every acknowledgement it received.  :func:`run_participant` is that loop,
shared with ``p2p-eval study simulate`` (:mod:`p2p_eval.study.simulate`), which passes a ``choose``
callback (synthetic observers of known behaviour); the load tests answer at random.  Uses httpx (test extra).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ``choose(session_state, trial) -> (answer, timing)``: the answer to a trial (``trial`` is the JSON of
#: ``GET /api/s/TOKEN/trial/INDEX``, ``session_state`` that of ``POST /api/studies/NAME/sessions``) and the
#: timing fields the page posts with it (onset1, offset1, onset2, offset2, response_ms).
Chooser = Callable[[dict[str, Any], dict[str, Any]], tuple[str, dict[str, float]]]


@dataclass
class LoadResult:
    """What the participants saw: acknowledged answers, answer latencies (s, retries included), errors,
    finished sessions, and how many requests were retried after a connection error."""

    acks: list[tuple[str, int, str]] = field(default_factory=list)  # (session token, trial index, answer)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    finished: int = 0
    retries: int = 0
    elapsed: float = 0.0


async def _request(client, method: str, url: str, result: LoadResult, attempts: int = 4, **kwargs):  # noqa: ANN001, ANN202
    """One request, retried on connection errors as the page does (answers are idempotent)."""
    import httpx

    for attempt in range(attempts):
        try:
            return await client.request(method, url, **kwargs)
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
            result.retries += 1
            await asyncio.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


async def run_participant(client, base: str, study: str, pid: str, result: LoadResult, rng: random.Random,  # noqa: ANN001
                          images: bool = True, choose: Chooser | None = None, check: bool = False,
                          arrival: dict[str, Any] | None = None) -> None:
    """One participant as the page runs it: (``check``: ``POST .../check`` first, as the page does before
    its instructions), start or resume the session, then for each trial fetch it, fetch its images
    (``images``) and post the answer from ``choose`` (default: at random, with fixed timings).
    ``arrival`` is the body of the start request (default: Prolific id ``pid``)."""
    body = arrival if arrival is not None else {"PROLIFIC_PID": pid, "SESSION_ID": "load"}
    if check:
        r = await _request(client, "POST", f"{base}/api/studies/{study}/check", result, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"check of {pid}: {r.status_code} {r.text}")
    r = await _request(client, "POST", f"{base}/api/studies/{study}/sessions", result, json=body)
    r.raise_for_status()
    state = r.json()
    token, index, total = state["session"], state["next_index"], state["total"]
    choices = ("1", "2") if state["protocol"] in ("2afc", "sequential") else ("real", "fake")
    while index < total:
        trial = await _request(client, "GET", f"{base}/api/s/{token}/trial/{index}", result)
        trial.raise_for_status()
        if trial.json()["done"]:  # the server skipped the remaining trials (an image it could not serve)
            break
        index = trial.json()["index"]  # later than asked when the server skipped a trial
        if images:
            for url in trial.json()["images"]:
                (await _request(client, "GET", base + url, result)).raise_for_status()
        if choose is None:
            value, timing = rng.choice(choices), {"onset1": 0.0, "offset1": 1000.0, "response_ms": 500.0}
        else:
            value, timing = choose(state, trial.json())
        body = {"index": index, "answer": value, **timing}
        start = time.perf_counter()
        r = await _request(client, "POST", f"{base}/api/s/{token}/answer", result, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"answer {index} of {pid}: {r.status_code} {r.text}")
        result.latencies.append(time.perf_counter() - start)
        result.acks.append((token, index, value))
        index = r.json()["next_index"]
    result.finished += 1


async def run_participants(base: str, study: str, count: int, prefix: str = "p", seed: int = 0, images: bool = True,
                           timeout: float = 60.0, result: LoadResult | None = None) -> LoadResult:
    """Run ``count`` participants at once (ids ``{prefix}{i}``); a participant stops at its first error."""
    import httpx

    result = result if result is not None else LoadResult()
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        tasks = [run_participant(client, base, study, f"{prefix}{i}", result, random.Random(seed * 100_003 + i), images)
                 for i in range(count)]
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                result.errors.append(f"{type(outcome).__name__}: {outcome}")
    result.elapsed = time.perf_counter() - start
    return result


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
    """``p2p-eval study serve`` in a subprocess on a free loopback port."""

    def __init__(self, db_url: str) -> None:
        self.db_url, self.port, self.proc = db_url, free_port(), None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LiveServer:
        """Start and wait until it answers."""
        import httpx

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "p2p_eval.cli", "study", "serve", "--db", self.db_url,
                                      "--port", str(self.port)], cwd=Path(__file__).resolve().parents[2], env=env)
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
        """SIGKILL: no shutdown handler runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
