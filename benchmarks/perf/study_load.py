"""Perceptual-study server under load, on SQLite and PostgreSQL, against a baseline measured in the same run.

Two loads against ``p2p-eval study serve`` on 127.0.0.1 (uvicorn: one process, and ``--workers 2`` for this
checkout), each on a fresh study:

- closed loop: one participant alone (the latency floor), then ``--participants`` (100) at once, each
  answering without pause (``check`` and ``start`` first, as the page does; 2 practice + 10 test trials,
  every image fetched as the page does): answers/s
  and the answer latency's p50 / p99 (goal: >= 250 answers/s and p99 <= 3x p50);
- open loop: ``--open-participants`` (200) arriving at random moments over ``--ramp`` s, each then opening
  one trial every ``--pause`` s (2 s) and answering it, whatever the server's latency (``check`` and
  ``start`` first, as the page does; 2 practice + 20 test trials): p50 / p99 of every request type
  (goal: p99 <= 50 ms for each).

Every run checks that nothing was lost or duplicated: each acknowledged answer is stored once, as
acknowledged, and nothing else is stored.  Each figure is measured for this checkout's server and for the
baseline server (``--baseline-rev``, default the server before the speed work of issue 12, exported with
``git archive`` and run from a temporary folder) in the same run, one after the other, with the same load
generator (:class:`p2p_eval.study.loadgen.LeanClient`, a minimal asyncio HTTP client: httpx spends several
times the server's CPU per request, and the load generator shares the machine).  The server's and the load
generator's CPU time per answer are reported beside the rates, so that a run on a busy machine can be
told from one on a quiet machine.

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
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.study.loadgen import LiveServer, run_participants, write_noise_folders  # noqa: E402
from p2p_eval.study.plan import StudySpec, create_study  # noqa: E402
from p2p_eval.study.store import make_engine  # noqa: E402

PRACTICE, TRIALS, OPEN_TRIALS = 2, 10, 20
BASELINE_REV = "e97e3f2"  # the study server before issue 12's speed work (ORM, thread pool, per-request encoding checks)
TYPES = ("check", "start", "trial", "image", "answer")


def make_images(root: Path) -> dict[str, str]:
    """real/, alg_a/, alg_b/ with 30 random 64x64 PNGs each."""
    return {name: str(folder) for name, folder in write_noise_folders(root, count=30, side=64).items()}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid`` and of its live descendants (a server's worker
    processes)."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, CPU s)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (pp, _) in stats.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier += children
    return sum(stats[p][1] for p in tree if p in stats)


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def run_load(server: LiveServer, db_url: str, study: str, count: int, pause: float = 0.0, ramp: float = 0.0) -> dict:
    """``count`` participants on ``study``; the figures, and the check that nothing was lost or duplicated."""
    cpu0, self0 = _cpu_s(server.proc.pid), _self_cpu_s()
    result = asyncio.run(run_participants(server.url, study, count, timeout=120, lean=True, pause=pause, ramp=ramp,
                                          check=True))
    server_cpu, load_cpu = _cpu_s(server.proc.pid) - cpu0, _self_cpu_s() - self0
    acked = {(t, i): a for t, i, a in result.acks}
    stored = stored_answers(db_url, study)
    n = max(len(result.acks), 1)
    out = {"participants": count, "finished": result.finished, "errors": len(result.errors),
           "first_errors": result.errors[:3], "answers": len(result.acks), "seconds": result.elapsed,
           "answers_per_s": len(result.acks) / result.elapsed, "retries": result.retries,
           "duplicated": len(result.acks) - len(acked), "lost": sum(stored.get(k) != v for k, v in acked.items()),
           "unacknowledged_stored": len(set(stored) - set(acked)),
           "server_cpu_ms_per_answer": 1000 * server_cpu / n, "loadgen_cpu_ms_per_answer": 1000 * load_cpu / n,
           "p50_ms": _pct(result.latencies, 50), "p99_ms": _pct(result.latencies, 99),
           "by_type": {kind: {"requests": len(result.by_type.get(kind, [])), "p50_ms": _pct(result.by_type.get(kind, []), 50),
                              "p99_ms": _pct(result.by_type.get(kind, []), 99)}
                       for kind in TYPES if result.by_type.get(kind)}}
    out["ok"] = out["errors"] == 0 and out["duplicated"] == 0 and out["lost"] == 0 and out["unacknowledged_stored"] == 0
    return out


def bench(db_url: str, images: dict[str, str], args: argparse.Namespace,
          servers: dict[str, tuple[Path | None, tuple[str, ...]]]) -> dict:
    """For each server (label -> (source, ``serve`` options): the baseline, this checkout with one process and
    with more): one participant alone, the closed-loop crowd, the open loop."""
    loads = {"alone": (1, 0.0, 0.0, TRIALS), "closed": (args.participants, 0.0, 0.0, TRIALS),
             "open": (args.open_participants, args.pause, args.ramp, OPEN_TRIALS)}
    engine = make_engine(db_url)
    for n, label in enumerate(servers):
        for load, (_, _, _, trials) in loads.items():
            create_study(engine, StudySpec(name=f"s{n}_{load}", real=images["real"], paired=True,
                                           fake={"a": images["alg_a"], "b": images["alg_b"]}, trials=trials,
                                           practice=PRACTICE))
    engine.dispose()
    out: dict[str, dict] = {}
    for n, (label, (source, serve_args)) in enumerate(servers.items()):
        server = LiveServer(db_url, source=source, args=serve_args).start()
        try:
            out[label] = {}
            for load, (count, pause, ramp, _) in loads.items():
                if load in args.skip:
                    continue
                out[label][load] = run_load(server, db_url, f"s{n}_{load}", count, pause, ramp)
                print(f"  {label} {load}: {out[label][load]['answers_per_s']:.0f} answers/s", file=sys.stderr, flush=True)
        finally:
            server.stop()
    return out


def baseline_source(rev: str, root: Path) -> Path | str:
    """``p2p_eval`` of ``rev`` exported under ``root`` (the folder to run it from), or why not."""
    try:
        archive = subprocess.run(["git", "archive", rev, "p2p_eval"], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"baseline {rev} unavailable ({exc})"
    return root


def baseline_options(root: Path) -> tuple[str, ...]:
    """``serve`` options of the exported baseline: one process (``--workers 1``) where its ``study serve`` takes
    ``--workers`` at all (revisions from 443fc74 on; from 0765d28 its default on PostgreSQL is two), none
    before, when one process was all it ran."""
    source = root / "p2p_eval" / "commands" / "study.py"
    return ("--workers", "1") if source.exists() and '"--workers"' in source.read_text() else ()


def postgres_url(arg: str | None) -> tuple[str | None, object | None, str]:
    """(URL, cluster to stop, note): the given server, else a throwaway cluster, else (None, None, why)."""
    if arg:
        return arg, None, "given server"
    try:
        from tests.study.conftest import ThrowawayPostgres, postgres_bin_dir
    except ImportError as exc:
        return None, None, f"skipped: no --postgres URL and the tests' fixture cannot be imported ({exc})"
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        return None, None, "skipped: no --postgres URL / P2P_TEST_POSTGRES_URL and no PostgreSQL binaries"
    cluster = ThrowawayPostgres(bin_dir)
    try:
        return cluster.start(), cluster, f"throwaway cluster ({bin_dir})"
    except Exception as exc:  # noqa: BLE001 - reported as a skip line
        cluster.stop()
        return None, None, f"skipped: throwaway PostgreSQL failed ({exc})"


def default_workers() -> dict[str, int]:
    """The server processes ``study serve --workers auto`` (the default) starts, per database, on this machine."""
    from p2p_eval.study.server import auto_workers

    return {db: auto_workers(db) for db in ("sqlite", "postgresql")}


def summary(results: dict, goals: bool = True) -> list[dict]:
    """Entries for benchmarks/collect.py's summary table: each figure of this checkout (one server process,
    then each count of processes measured) beside the baseline's; the count ``study serve`` starts by default
    is marked."""
    items: list[dict] = []
    defaults = default_workers()
    for db, runs in results.items():
        if not isinstance(runs, dict) or "new" not in runs or "baseline" not in runs:
            continue
        for label, loads in runs.items():
            if label == "new" or label.startswith("new, "):
                count = 1 if label == "new" else int(label.split()[1])
                marks = ([] if label == "new" else [label[5:]]) + (["the default"] if count == defaults.get(db) else [])
                suffix = f" ({', '.join(marks)})" if marks else ""
                _add_figures(items, f"{db}{suffix}", loads, runs["baseline"], goals)
    return items


def _add_figures(items: list[dict], name: str, new: dict, old: dict, goals: bool) -> None:
    """Summary entries of one server's loads (``new``) against the baseline server's (``old``)."""

    def add(figure: str, value: float | None, baseline_value: float | None, unit: str, goal: str | None) -> None:
        if value is None or baseline_value is None:
            return
        items.append({"figure": f"{name}: {figure}", "value": value, "unit": unit, "baseline": f"server at {BASELINE_REV}",
                      "baseline_value": baseline_value,
                      "ratio": value / baseline_value if baseline_value else float("nan"), "goal": goal if goals else None})

    if "closed" in new and "closed" in old:
        c, b = new["closed"], old["closed"]
        add(f"closed loop, {c['participants']} participants: answers/s", c["answers_per_s"], b["answers_per_s"],
            "answers/s", ">= 250 answers/s")
        add("closed loop: answer p99 / p50", c["p99_ms"] / c["p50_ms"], b["p99_ms"] / b["p50_ms"], "x", "<= 3")
        add("closed loop: answer p50", c["p50_ms"], b["p50_ms"], "ms", None)
        add("closed loop: answer p99", c["p99_ms"], b["p99_ms"], "ms", None)
    if "open" in new and "open" in old:
        for kind in TYPES:
            if kind in new["open"]["by_type"] and kind in old["open"]["by_type"]:
                add(f"open loop, {new['open']['participants']} participants, {kind} p99",
                    new["open"]["by_type"][kind]["p99_ms"], old["open"]["by_type"][kind]["p99_ms"], "ms", "<= 50 ms")


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "" if x is None else format(x, fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=100, help="closed loop: participants at once (default 100)")
    parser.add_argument("--open-participants", type=int, default=200, help="open loop: participants (default 200)")
    parser.add_argument("--pause", type=float, default=2.0, help="open loop: seconds between answers (default 2)")
    parser.add_argument("--ramp", type=float, default=10.0, help="open loop: arrivals spread over this many s (default 10)")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help=f"git revision of the baseline server (default {BASELINE_REV})")
    parser.add_argument("--no-baseline", action="store_true", help="measure this checkout only")
    parser.add_argument("--skip", nargs="*", default=[], choices=["alone", "closed", "open"], help="loads to leave out")
    parser.add_argument("--databases", nargs="*", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres", default=os.environ.get("P2P_TEST_POSTGRES_URL"),
                        help="PostgreSQL SQLAlchemy URL (default $P2P_TEST_POSTGRES_URL, else a throwaway cluster)")
    parser.add_argument("--server-workers", type=int, nargs="+", default=[1, 2],
                        help="this checkout's server with each of these process counts (`study serve --workers`; "
                        "default 1 2; the baseline runs one)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    results: dict[str, dict | str] = {}
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(Path(tmp))
        servers: dict[str, tuple[Path | None, tuple[str, ...]]] = {}
        if not args.no_baseline:
            (Path(tmp) / "baseline").mkdir()
            found = baseline_source(args.baseline_rev, Path(tmp) / "baseline")
            if isinstance(found, Path):
                servers["baseline"] = (found, baseline_options(found))
            else:
                notes.append(found)
        for workers in args.server_workers:
            servers["new" if workers == 1 else f"new, {workers} processes"] = (None, ("--workers", str(workers)))
        if "sqlite" in args.databases:
            results["sqlite"] = bench(f"sqlite:///{tmp}/bench.db", images, args, servers)
        if "postgresql" in args.databases:
            url, cluster, note = postgres_url(args.postgres)
            notes.append(f"postgresql: {note}")
            if url is None:
                results["postgresql"] = note
            else:
                import sqlalchemy as sa

                schema = f"p2p_bench_{secrets.token_hex(4)}"
                admin = sa.create_engine(url)
                try:
                    with admin.begin() as conn:
                        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
                    sep = "&" if "?" in url else "?"
                    try:
                        results["postgresql"] = bench(f"{url}{sep}options=-csearch_path%3D{schema}", images, args, servers)
                    finally:
                        with admin.begin() as conn:
                            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
                finally:
                    admin.dispose()
                    if cluster is not None:
                        cluster.stop()
    load = os.getloadavg()
    defaults = ", ".join(f"{n} on {db}" for db, n in default_workers().items())  # e.g. "1 on sqlite, 2 on postgresql"
    print(f"uvicorn on 127.0.0.1 (one process unless a row says more), load generator in the same machine ({os.cpu_count()} cores; load average "
          f"{load[0]:.1f} at the end); baseline = the server at {args.baseline_rev}, new = this checkout, same run, "
          f"same load generator; server processes `study serve` starts by default (`--workers auto`): {defaults}\n")
    for note in notes:
        print(f"- {note}")
    print(f"\nClosed loop: {args.participants} participants at once, {PRACTICE} practice + {TRIALS} test trials each, "
          "images fetched, no pause (alone: 1 participant).  Answer latency.\n")
    print("| database | server | load | answers | answers/s | p50 (ms) | p99 (ms) | p99/p50 | server CPU ms/answer | "
          "load-generator CPU ms/answer | lost / duplicated / errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for db, runs in results.items():
        if isinstance(runs, str):
            print(f"| {db} | {runs} | | | | | | | | | |")
            continue
        for label, loads in runs.items():
            for name, r in loads.items():
                if name == "open":
                    continue
                print(f"| {db} | {label} | {name} | {r['answers']} | {r['answers_per_s']:.0f} | {_f(r['p50_ms'])} | "
                      f"{_f(r['p99_ms'])} | {_f(r['p99_ms'] / r['p50_ms'], '.2f')} | {r['server_cpu_ms_per_answer']:.2f} | "
                      f"{r['loadgen_cpu_ms_per_answer']:.2f} | {r['lost']} / {r['duplicated']} / {r['errors']} |")
    print(f"\nOpen loop: {args.open_participants} participants arriving over {args.ramp:.0f} s, one trial every "
          f"{args.pause:g} s ({PRACTICE} practice + {OPEN_TRIALS} test trials).  p50 / p99 (ms) per request type.\n")
    print("| database | server | answers/s | " + " | ".join(TYPES) + " | server CPU ms/answer | lost / duplicated / errors |")
    print("|---|---|---|" + "---|" * len(TYPES) + "---|---|")
    for db, runs in results.items():
        if isinstance(runs, str):
            continue
        for label, loads in runs.items():
            r = loads.get("open")
            if r is None:
                continue
            cells = [f"{_f(r['by_type'][k]['p50_ms'])} / {_f(r['by_type'][k]['p99_ms'])}" if k in r["by_type"] else ""
                     for k in TYPES]
            print(f"| {db} | {label} | {r['answers_per_s']:.0f} | " + " | ".join(cells) +
                  f" | {r['server_cpu_ms_per_answer']:.2f} | {r['lost']} / {r['duplicated']} / {r['errors']} |")
    items = summary(results)
    if items:
        print("\nThis checkout against the baseline (ratio = new / baseline):\n")
        print("| figure | new | baseline | ratio | goal |")
        print("|---|---|---|---|---|")
        for item in items:
            print(f"| {item['figure']} | {item['value']:.1f} {item['unit']} | {item['baseline_value']:.1f} {item['unit']} | "
                  f"{item['ratio']:.2f}x | {item['goal'] or ''} |")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": items, "notes": notes,
                                         "load_average_end": load}, indent=2) + "\n")
    # this checkout must lose, duplicate and fail nothing; the baseline's figures are reported as they came
    ok = all(isinstance(runs, str) or all(r["ok"] for label, loads in runs.items() if label != "baseline"
                                          for r in loads.values()) for runs in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
