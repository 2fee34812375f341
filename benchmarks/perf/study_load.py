"""Perceptual-study server under load: answers/s and answer latency (p50 / p99) on SQLite and PostgreSQL.

N simulated participants (default 100) start sessions at the same moment against ``p2p-eval study serve``
(uvicorn, one process) on 127.0.0.1 and complete 2 practice + 10 test trials each, fetching every image as
the page does.  SQLite runs on a temp file (WAL); PostgreSQL runs when ``--postgres URL`` or
``P2P_TEST_POSTGRES_URL`` is given, in a temporary schema that is dropped afterwards.

    python benchmarks/perf/study_load.py [--participants 100] [--json OUT]
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

from p2p_eval.study.loadgen import LiveServer, run_participants, write_noise_folders  # noqa: E402
from p2p_eval.study.plan import StudySpec, create_study  # noqa: E402
from p2p_eval.study.store import make_engine  # noqa: E402

PRACTICE, TRIALS = 2, 10


def make_images(root: Path) -> dict[str, str]:
    """real/, alg_a/, alg_b/ with 20 random 64x64 PNGs each."""
    return {name: str(folder) for name, folder in write_noise_folders(root, count=20, side=64).items()}


def bench(db_url: str, images: dict[str, str], participants: int) -> dict:
    """One participant alone (the latency floor), then ``participants`` at once, on a fresh study each."""
    engine = make_engine(db_url)
    for name in ("alone", "crowd"):
        create_study(engine, StudySpec(name=name, real=images["real"], fake={"a": images["alg_a"], "b": images["alg_b"]},
                                       trials=TRIALS, practice=PRACTICE, paired=True))
    engine.dispose()
    server = LiveServer(db_url).start()
    out = {}
    try:
        for name, count in (("alone", 1), ("crowd", participants)):
            result = asyncio.run(run_participants(server.url, name, count, timeout=120))
            lat = np.array(result.latencies) * 1000
            out[name] = {"participants": count, "finished": result.finished, "errors": len(result.errors),
                         "first_errors": result.errors[:3], "answers": len(result.acks), "seconds": result.elapsed,
                         "answers_per_s": len(result.acks) / result.elapsed,
                         "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
                         "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None}
    finally:
        server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=100, help="simulated participants at once (default 100)")
    parser.add_argument("--postgres", default=os.environ.get("P2P_TEST_POSTGRES_URL"),
                        help="PostgreSQL SQLAlchemy URL (default $P2P_TEST_POSTGRES_URL; skipped when unset)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    results: dict[str, dict | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(Path(tmp))
        results["sqlite"] = bench(f"sqlite:///{tmp}/bench.db", images, args.participants)
        if args.postgres:
            import sqlalchemy as sa

            schema = f"p2p_bench_{secrets.token_hex(4)}"
            admin = sa.create_engine(args.postgres)
            with admin.begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            sep = "&" if "?" in args.postgres else "?"
            try:
                results["postgresql"] = bench(f"{args.postgres}{sep}options=-csearch_path%3D{schema}", images,
                                              args.participants)
            finally:
                with admin.begin() as conn:
                    conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
                admin.dispose()
        else:
            results["postgresql"] = "skipped: no --postgres URL / P2P_TEST_POSTGRES_URL"
    print(f"{args.participants} participants at once, {PRACTICE} practice + {TRIALS} test trials each, "
          "images fetched; one uvicorn process on 127.0.0.1\n")
    print("| database | participants at once | answers | errors | answers/s | p50 latency (ms) | p99 latency (ms) |")
    print("|---|---|---|---|---|---|---|")
    for db, runs in results.items():
        if isinstance(runs, str):
            print(f"| {db} | {runs} | | | | | |")
            continue
        for r in runs.values():
            print(f"| {db} | {r['participants']} | {r['answers']} | {r['errors']} | {r['answers_per_s']:.0f} | "
                  f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    ok = all(isinstance(runs, str) or all(r["errors"] == 0 for r in runs.values()) for runs in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
