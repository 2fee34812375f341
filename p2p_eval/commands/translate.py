"""``p2p-eval translate``: translate a data split with a trained run, one PNG per input (or K with --samples K)."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.cli_args import add_quiet, nonnegative_int, positive_int
from p2p_eval.outputs import declare

ORDER = 30


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``translate``."""
    parser = sub.add_parser("translate", help="translate a data split with a trained run",
                            description="Write OUT/<input name>.png (lossless 8-bit RGB) for every AB pair in "
                            "DATA/SPLIT. Default test-time protocol is the run's (the paper's: dropout on, batch "
                            "statistics of each image); --eval-mode uses the usual eval() mode. --samples K writes "
                            "K outputs per input, OUT/<input name>_sample<k>.png for k = 0..K-1, each with its own "
                            "dropout noise, reproducible from --seed.")
    parser.add_argument("--run", required=True, type=Path, help="run folder written by p2p-eval train")
    parser.add_argument("--data", required=True, type=Path, help="data folder holding SPLIT/ with AB pairs")
    parser.add_argument("--split", default="val", help="split folder to translate (default val)")
    parser.add_argument("--out", required=True, type=Path, help="output folder, new or empty (created; --overwrite to write into one holding files)")
    parser.add_argument("--eval-mode", action="store_true", help="eval(): no dropout, batch-norm running averages")
    parser.add_argument("--size", type=positive_int, help="image side fed to the net (default the training size; a multiple "
                        "of 2**num_downs)")
    parser.add_argument("--samples", type=positive_int, default=1, metavar="K", help="outputs per input, each with "
                        "its own dropout masks: NAME_sample0.png .. NAME_sample{K-1}.png (default 1: NAME.png)")
    parser.add_argument("--seed", type=nonnegative_int, help="seed of the dropout masks (default the run's seed)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add_quiet(parser)
    parser.set_defaults(func=_translate)
    parser.add_argument("--overwrite", action="store_true", help="allow --out to be a folder that already holds files")
    declare(parser, folders=["out"], inputs=["data"])


def _translate(args: argparse.Namespace) -> int:
    from p2p_eval.translate import translate_run

    paths = translate_run(args.run, args.data, args.out, split=args.split, eval_mode=True if args.eval_mode else None,
                          device=args.device, size=args.size, samples=args.samples, seed=args.seed,
                          progress=not args.quiet)
    each = f" ({args.samples} per input)" if args.samples > 1 else ""
    print(f"wrote {len(paths)} images{each} to {args.out}")
    return 0
