"""``p2p-eval demo``: the whole pipeline on the synthetic data set (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.outputs import declare

ORDER = 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo``."""
    parser = sub.add_parser("demo", help="run the whole pipeline on synthetic data (data, segmenter, Tables 1-3, report)",
                            description="Generate the synthetic street-scene set, train its segmenter, then regenerate "
                            "Tables 1-3 and Figure 7 at the smoke preset. Stages whose outputs exist are reused. Everything is "
                            "written under --out (the report to OUT/report unless --report says otherwise).")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="work folder for data, segmenter and runs (default demo_out)")
    parser.add_argument("--report", type=Path,
                        help="report folder (default OUT/report; `make smoke-report` passes reports/smoke)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_demo)
    declare(parser, kept=["out", "report"])


def _demo(args: argparse.Namespace) -> int:
    from p2p_eval.demo import run_demo

    paths = run_demo(args.out, args.report, device=args.device, seed=args.seed, progress=not args.quiet)
    print(f"data:      {paths['data']}")
    print(f"segmenter: {paths['segmenter']}")
    print(f"report:    {paths['report']}/index.html (tables: {paths['report']}/table1.md ...)")
    return 0
