"""``p2p-eval train``: train one generator variant (a shipped name or a TOML file) on an AB data set."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.cli_args import add_deprecated, add_quiet, nonnegative_int, positive_int
from p2p_eval.device import PRECISIONS
from p2p_eval.outputs import declare

ORDER = 20


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train``."""
    parser = sub.add_parser("train", help="train a pix2pix generator variant (resumable)",
                            description="Train the generator variant of --generator on DIR/train (AB pairs) into the run "
                            "folder --out: config.toml, log.jsonl, samples/, checkpoints/last.pt and a DONE marker. "
                            "Flags override fields of the variant file. --resume continues a killed run exactly.")
    parser.add_argument("--generator", required=True,
                        help="a shipped variant name (e.g. l1_cgan; an unknown name lists them) or a TOML file")
    parser.add_argument("--data", required=True, type=Path, help="data folder with train/ (and val/ for samples)")
    parser.add_argument("--out", required=True, type=Path, help="run folder (created)")
    parser.add_argument("--epochs", type=positive_int, help="number of epochs (overrides the file)")
    parser.add_argument("--size", type=positive_int, help="train at S x S; a U-Net without num_downs in the file gets depth log2(S)")
    parser.add_argument("--batch-size", type=positive_int, help="images per step (overrides the file's batch_size)")
    add_deprecated(parser, "--batch", "--batch-size", "batch_size", type=positive_int)
    parser.add_argument("--direction", metavar="AtoB|BtoA", help="which half of each AB file is the input (overrides "
                        "the file; pix2pix's Cityscapes and Facades files put the photo in A, so labels -> photo is BtoA)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--seed", type=int, help="random seed (overrides the file)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--max-steps", type=positive_int, help="stop after this many steps (smoke runs)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (default): bf16 autocast where bf16 is native (CUDA with bf16, a CPU with AVX512-BF16 "
                        "or AMX; measured: no quality loss, reports/amp_quality/), else fp32; fp32; bf16. A resumed run "
                        "keeps its own")
    parser.add_argument("--amp", action="store_const", const="bf16", dest="precision",
                        help="same as --precision bf16 (channels_last is automatic on CUDA)")
    parser.add_argument("--workers", type=nonnegative_int, help="DataLoader worker processes (default 0 on CPU, 4 on CUDA)")
    add_quiet(parser)
    parser.set_defaults(func=_train)
    declare(parser, kept=["out"], inputs=["data"])


def _train(args: argparse.Namespace) -> int:
    from p2p_eval.config import load_generator
    from p2p_eval.train.trainer import train

    overrides = {"epochs": args.epochs, "size": args.size, "batch_size": args.batch_size, "seed": args.seed,
                 "max_steps": args.max_steps, "direction": args.direction}
    cfg = load_generator(args.generator, overrides)
    run = train(cfg, args.data, args.out, device=args.device, resume=args.resume, progress=not args.quiet,
                precision=args.precision, num_workers=args.workers)
    print(f"run finished: {run} (checkpoint {run / 'checkpoints' / 'last.pt'})")
    return 0
