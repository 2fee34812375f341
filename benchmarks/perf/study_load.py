"""Perceptual-study server under a real study's load, on SQLite and PostgreSQL, against the speed goals.

Labs run studies with 50-200 participants at once, each answering every few seconds.  Two loads against
``p2p-eval study serve`` on 127.0.0.1 (its default number of processes, ``--workers auto``), each on a fresh
study, every participant fetching each trial's images as the page does (``check`` and ``start`` first):

- open loop: ``--open-participants`` (200) arriving at random moments over ``--ramp`` s, each then opening one
  trial every ``--pause`` s (2 s) and answering it, whatever the server's latency (2 practice +
  ``--open-trials`` test trials); goal: p99 <= 100 ms for every request type;
- closed loop: ``--participants`` (100) at once, each answering without pause (2 practice + 10 test trials);
  goal: >= 100 answers/s, answer latency p99 <= 3x p50.

Every run checks that nothing was lost or duplicated: each acknowledged answer is stored once, as
acknowledged, and nothing else is stored.  The load generator (:class:`tests.study.loadgen.LeanClient`, a
minimal asyncio HTTP client: httpx spends several times the server's CPU per request) shares the machine.

PostgreSQL: ``--postgres URL`` / ``$P2P_TEST_POSTGRES_URL``, else a throwaway cluster from the system's
binaries (the tests' fixture, ``tests/study/conftest.py``), in a temporary schema dropped afterwards;
skipped with a line when neither exists.

    python benchmarks/perf/study_load.py [--participants 100] [--open-participants 200] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from p2p_eval.study.plan import StudySpec, create_study  # noqa: E402
from p2p_eval.study.store import make_engine  # noqa: E402
from tests.study.loadgen import LiveServer, Pace, run_participants, write_noise_folders  # noqa: E402

PRACTICE, TRIALS = 2, 10
TYPES = ("check", "start", "trial", "image", "answer")
OPEN_P99_MS, CLOSED_RATE, CLOSED_SPREAD = 100.0, 100.0, 3.0  # the goals


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.array(values) * 1000, q)) if values else None


def stored_answers(db_url: str, study: str) -> dict[tuple[str, int], str]:
    """(session token, trial index) -> answer of every answered trial of ``study``."""
    from sqlalchemy import select

    from p2p_eval.study.models import Session, Study, Trial

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Session.token, Trial.index, Trial.answer)
                                .join(Session, Trial.session_id == Session.id).join(Study, Session.study_id == Study.id)
                                .where(Study.name == study, Trial.answer.is_not(None))).all()
    finally:
        engine.dispose()
    return {(token, index): answer for token, index, answer in rows}


def run_load(server: LiveServer, db_url: str, study: str, count: int, pace: Pace) -> dict:
    """``count`` participants on ``study``; the figures, and the check that nothing was lost or duplicated."""
    result = asyncio.run(run_participants(server.url, study, count, pace, timeout=120, lean=True))
    acked = {(t, i): a for t, i, a in result.acks}
    stored = stored_answers(db_url, study)
    out = {"participants": count, "finished": result.finished, "errors": len(result.errors),
           "first_errors": result.errors[:3], "answers": len(result.acks), "seconds": result.elapsed,
           "answers_per_s": len(result.acks) / result.elapsed, "retries": result.retries,
           "duplicated": len(result.acks) - len(acked), "lost": sum(stored.get(k) != v for k, v in acked.items()),
           "unacknowledged_stored": len(set(stored) - set(acked)),
           "p50_ms": _pct(result.latencies, 50), "p99_ms": _pct(result.latencies, 99),
           "by_type": {kind: {"requests": len(result.by_type[kind]), "p50_ms": _pct(result.by_type[kind], 50),
                              "p99_ms": _pct(result.by_type[kind], 99)} for kind in TYPES if result.by_type.get(kind)}}
    out["ok"] = out["errors"] == 0 and out["duplicated"] == 0 and out["lost"] == 0 and out["unacknowledged_stored"] == 0
    return out


def bench(db_url: str, images: dict[str, str], args: argparse.Namespace) -> dict:
    """The open and the closed loop on one database, each on a study of its own, against one server."""
    loads = {"open": (args.open_participants, Pace(check=True, pause=args.pause, ramp=args.ramp), args.open_trials),
             "closed": (args.participants, Pace(check=True), TRIALS)}
    engine = make_engine(db_url)
    for load, (_, _, trials) in loads.items():
        create_study(engine, StudySpec(name=load, real=images["real"], paired=True, trials=trials, practice=PRACTICE,
                                       fake={"a": images["alg_a"], "b": images["alg_b"]}))
    engine.dispose()
    out = {}
    server = LiveServer(db_url).start()
    try:
        for load, (count, pace, _) in loads.items():
            out[load] = run_load(server, db_url, load, count, pace)
            print(f"  {load}: {out[load]['answers_per_s']:.0f} answers/s", file=sys.stderr, flush=True)
    finally:
        server.stop()
    return out


def postgres_url(arg: str | None) -> tuple[str | None, object | None, str]:
    """(URL, cluster to stop, note): the given server, else a throwaway cluster, else (None, None, why)."""
    if arg:
        return arg, None, "given server"
    from tests.study.conftest import ThrowawayPostgres, postgres_bin_dir

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        return None, None, "skipped: no --postgres URL / P2P_TEST_POSTGRES_URL and no PostgreSQL binaries"
    cluster = ThrowawayPostgres(bin_dir)
    try:
        return cluster.start(), cluster, f"throwaway cluster ({bin_dir})"
    except Exception as exc:  # noqa: BLE001 - reported as a skip line
        cluster.stop()
        return None, None, f"skipped: throwaway PostgreSQL failed ({exc})"


def bench_postgres(images: dict[str, str], args: argparse.Namespace) -> tuple[dict | str, str]:
    """:func:`bench` in a temporary schema of the PostgreSQL server; (figures or why not, note)."""
    import sqlalchemy as sa

    from tests.study.conftest import schema_url

    url, cluster, note = postgres_url(args.postgres)
    if url is None:
        return note, note
    schema = f"p2p_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        try:
            return bench(schema_url(url, schema), images, args), note
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    finally:
        admin.dispose()
        if cluster is not None:
            cluster.stop()


def summary(results: dict) -> list[dict]:
    """Entries for benchmarks/collect.py's summary table: each figure beside its goal (the "baseline" column)."""
    items: list[dict] = []

    def add(figure: str, value: float | None, goal_value: float, unit: str, goal: str) -> None:
        if value is not None:
            items.append({"figure": figure, "value": value, "unit": unit, "baseline": "goal", "baseline_value": goal_value,
                          "ratio": value / goal_value, "goal": goal})

    for db, runs in results.items():
        if isinstance(runs, str):
            continue
        o, c = runs["open"], runs["closed"]
        for kind, stats in o["by_type"].items():
            add(f"{db}: open loop, {o['participants']} participants, {kind} p99", stats["p99_ms"], OPEN_P99_MS, "ms",
                f"<= {OPEN_P99_MS:.0f} ms")
        add(f"{db}: closed loop, {c['participants']} participants: answers/s", c["answers_per_s"], CLOSED_RATE,
            "answers/s", f">= {CLOSED_RATE:.0f} answers/s")
        add(f"{db}: closed loop: answer p99 / p50", c["p99_ms"] / c["p50_ms"], CLOSED_SPREAD, "x", f"<= {CLOSED_SPREAD:g}")
    return items


def met(item: dict) -> bool:
    """Whether a summary entry meets its goal."""
    return item["value"] >= item["baseline_value"] if item["goal"].startswith(">=") else item["value"] <= item["baseline_value"]


def _f(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def print_tables(results: dict, notes: list[str], args: argparse.Namespace) -> list[dict]:
    """The markdown report: the open loop per request type, the closed loop, each figure beside its goal."""
    from p2p_eval.study.server import auto_workers

    load = os.getloadavg()
    print(f"uvicorn on 127.0.0.1, `study serve` default processes (`--workers auto`: "
          f"{auto_workers('sqlite')} on SQLite, {auto_workers('postgresql')} on PostgreSQL); load generator on the "
          f"same machine ({os.cpu_count()} cores; load average {load[0]:.1f} at the end)\n")
    for note in notes:
        print(f"- {note}")
    print(f"\nOpen loop: {args.open_participants} participants arriving over {args.ramp:g} s, one trial every "
          f"{args.pause:g} s ({PRACTICE} practice + {args.open_trials} test trials). p50 / p99 (ms) per request type.\n")
    print("| database | answers/s | " + " | ".join(TYPES) + " | lost / duplicated / errors |")
    print("|---|---|" + "---|" * len(TYPES) + "---|")
    done = {db: runs for db, runs in results.items() if not isinstance(runs, str)}
    for db, runs in done.items():
        r = runs["open"]
        cells = [f"{_f(r['by_type'][k]['p50_ms'])} / {_f(r['by_type'][k]['p99_ms'])}" if k in r["by_type"] else ""
                 for k in TYPES]
        print(f"| {db} | {r['answers_per_s']:.0f} | " + " | ".join(cells) + f" | {r['lost']} / {r['duplicated']} / {r['errors']} |")
    print(f"\nClosed loop: {args.participants} participants at once, {PRACTICE} practice + {TRIALS} test trials each, "
          "no pause. Answer latency.\n")
    print("| database | answers | answers/s | p50 (ms) | p99 (ms) | p99/p50 | lost / duplicated / errors |")
    print("|---|---|---|---|---|---|---|")
    for db, runs in done.items():
        r = runs["closed"]
        print(f"| {db} | {r['answers']} | {r['answers_per_s']:.0f} | {_f(r['p50_ms'])} | {_f(r['p99_ms'])} | "
              f"{r['p99_ms'] / r['p50_ms']:.2f} | {r['lost']} / {r['duplicated']} / {r['errors']} |")
    items = summary(results)
    print("\nEach figure beside its goal:\n")
    print("| figure | value | goal | met |")
    print("|---|---|---|---|")
    for item in items:
        print(f"| {item['figure']} | {item['value']:.1f} {item['unit']} | {item['goal']} | {'yes' if met(item) else 'NO'} |")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=100, help="closed loop: participants at once (default 100)")
    parser.add_argument("--open-participants", type=int, default=200, help="open loop: participants (default 200)")
    parser.add_argument("--open-trials", type=int, default=20, help="open loop: test trials per participant (default 20)")
    parser.add_argument("--pause", type=float, default=2.0, help="open loop: seconds between answers (default 2)")
    parser.add_argument("--ramp", type=float, default=10.0, help="open loop: arrivals spread over this many s (default 10)")
    parser.add_argument("--databases", nargs="*", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres", default=os.environ.get("P2P_TEST_POSTGRES_URL"),
                        help="PostgreSQL SQLAlchemy URL (default $P2P_TEST_POSTGRES_URL, else a throwaway cluster)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    results: dict[str, dict | str] = {}
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        images = {name: str(folder) for name, folder in write_noise_folders(Path(tmp), count=30, side=64).items()}
        if "sqlite" in args.databases:
            results["sqlite"] = bench(f"sqlite:///{tmp}/bench.db", images, args)
        if "postgresql" in args.databases:
            results["postgresql"], note = bench_postgres(images, args)
            notes.append(f"postgresql: {note}")
    items = print_tables(results, notes, args)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": items, "notes": notes,
                                         "load_average_end": os.getloadavg()}, indent=2) + "\n")
    # nothing may be lost, duplicated or fail; the speed figures are reported beside their goals
    ok = all(isinstance(runs, str) or all(r["ok"] for r in runs.values()) for runs in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
