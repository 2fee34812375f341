"""``p2p-eval one-to-many``: train the one-to-many translation framework on two unpaired folders, and sample it."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.cli_args import add_quiet, nonnegative_int, positive_int
from p2p_eval.outputs import declare

ORDER = 25


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``one-to-many train`` and ``one-to-many translate``."""
    parser = sub.add_parser("one-to-many", help="unpaired one-to-many translation (domain-invariant and "
                            "domain-specific codes): train, translate",
                            description="A second model family beside pix2pix: unsupervised one-to-many translation "
                            "with domain-invariant and domain-specific codes and a domain-specific variational "
                            "information bound (docs/one-to-many.md).")
    group = parser.add_subparsers(dest="o2m_command", metavar="<one-to-many command>")
    _register_train(group)
    _register_translate(group)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _register_train(group: argparse._SubParsersAction) -> None:
    train = group.add_parser("train", help="train on two unpaired image folders (resumable)",
                             description="Train the variant of --generator on the images of --domain-x and --domain-y "
                             "(unpaired: each step draws a batch of each, independently) into the run folder --out: "
                             "config.toml, log.jsonl, samples/, checkpoints/last.pt and a DONE marker. Flags override "
                             "fields of the variant file. --resume continues a killed run exactly.")
    train.add_argument("--generator", required=True, help="a shipped variant (vib, vib_no_ds_cycle; an unknown name "
                       "lists them) or a TOML file")
    train.add_argument("--domain-x", required=True, type=Path, help="folder of domain X images")
    train.add_argument("--domain-y", required=True, type=Path, help="folder of domain Y images")
    train.add_argument("--out", required=True, type=Path, help="run folder (created)")
    train.add_argument("--size", type=positive_int, help="train at S x S (a multiple of 4, at least 64)")
    train.add_argument("--epochs", type=positive_int, help="number of epochs (an epoch: as many images as the larger "
                       "folder holds, in steps of --batch-size)")
    train.add_argument("--max-steps", type=positive_int, help="stop after this many steps (raise it with --resume)")
    train.add_argument("--batch-size", type=positive_int, help="images of each domain per step (default 8; the unbiased "
                       "MMD needs at least 2)")
    train.add_argument("--seed", type=int, help="random seed (overrides the file)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add_quiet(train)
    train.set_defaults(func=_train)
    declare(train, kept=["out"], inputs=["domain_x", "domain_y"])


def _register_translate(group: argparse._SubParsersAction) -> None:
    trans = group.add_parser("translate", help="sample a trained run: K outputs per input, or one per reference",
                             description="Translate every image of --images to domain --to with the run in --run. "
                             "Without --reference: K outputs per input from K prior codes (the same K codes for every "
                             "input, drawn from --seed): OUT/<name>_sample<k>.png (OUT/<name>.png when K is 1), the "
                             "naming `p2p-eval metrics --metric lpips-diversity` reads. With --reference DIR: one "
                             "output per input and reference image, in the style of the reference's domain-specific "
                             "code: OUT/<name>_ref_<reference name>.png.")
    trans.add_argument("--run", required=True, type=Path, help="run folder written by p2p-eval one-to-many train")
    trans.add_argument("--images", required=True, type=Path, help="folder of input images (domain X for --to y)")
    trans.add_argument("--to", required=True, choices=("y", "x"), help="target domain: y (X -> Y) or x (Y -> X)")
    trans.add_argument("--out", required=True, type=Path, help="output folder, new or empty (created)")
    trans.add_argument("--samples", type=positive_int, default=1, metavar="K", help="outputs per input (default 1)")
    trans.add_argument("--reference", type=Path, help="folder of target-domain images whose codes to use")
    trans.add_argument("--seed", type=nonnegative_int, help="seed of the prior codes (default the run's seed)")
    trans.add_argument("--size", type=positive_int, help="image side fed to the networks (default the run's size)")
    trans.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    trans.add_argument("--overwrite", action="store_true", help="allow --out to be a folder that already holds files")
    add_quiet(trans)
    trans.set_defaults(func=_translate)
    declare(trans, folders=["out"], inputs=["run", "images", "reference"])


def _train(args: argparse.Namespace) -> int:
    from p2p_eval.one_to_many.config import load_variant
    from p2p_eval.one_to_many.trainer import train

    overrides = {"size": args.size, "epochs": args.epochs, "max_steps": args.max_steps,
                 "batch_size": args.batch_size, "seed": args.seed}
    cfg = load_variant(args.generator, overrides)
    run = train(cfg, args.domain_x, args.domain_y, args.out, device=args.device, resume=args.resume,
                progress=not args.quiet)
    print(f"run finished: {run} (checkpoint {run / 'checkpoints' / 'last.pt'})")
    return 0


def _translate(args: argparse.Namespace) -> int:
    from p2p_eval.one_to_many.translate import SampleOptions, translate_folder

    options = SampleOptions(to=args.to, samples=args.samples, reference=args.reference, seed=args.seed,
                            size=args.size, device=args.device, progress=not args.quiet)
    written = translate_folder(args.run, args.images, args.out, options)
    print(f"wrote {len(written)} images to {args.out}")
    return 0
