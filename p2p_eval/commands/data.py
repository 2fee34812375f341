"""``p2p-eval data``: make the synthetic street-scene set; turn the official Cityscapes release or a folder of colour
photos (colorization) into AB pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.cli_args import add_quiet, positive_int, probability
from p2p_eval.outputs import declare

ORDER = 10


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``data synth``, ``data prepare-cityscapes``, ``data prepare-colorization`` and ``data halves``."""
    parser = sub.add_parser("data", help="make the synthetic data set or prepare Cityscapes in the AB layout",
                            description="Data sets in the aligned AB layout: DIR/{train,val}/NAME.png with the "
                            "photo (A) on the left and the colour label map (B) on the right, plus "
                            "DIR/{train,val}_labels/NAME.png holding train ids (255 = ignore).")
    data_sub = parser.add_subparsers(dest="data_command", metavar="<data command>")

    synth = data_sub.add_parser("synth", help="write the synthetic street-scene data set (the embedded default)",
                                description="Render synthetic street scenes with the 19 Cityscapes classes: "
                                "photo | colour label pairs plus train-id label PNGs. Same seed, same bytes.")
    synth.add_argument("--out", required=True, type=Path, help="output folder (created)")
    synth.add_argument("--count", type=positive_int, default=500, help="number of scenes, split into train/ and val/ (default 500)")
    synth.add_argument("--size", type=positive_int, default=256, help="side of each square half-image in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes identical files (default 0)")
    synth.add_argument("--val-fraction", type=probability, default=0.2, help="share of scenes put in val/ (default 0.2)")
    add_quiet(synth)
    synth.set_defaults(func=_synth)
    declare(synth, kept=["out"])

    prep = data_sub.add_parser("prepare-cityscapes", help="official Cityscapes release -> AB pairs + train-id labels",
                               description="Read leftImg8bit/ and gtFine/*_labelIds.png under --root and write the "
                               "pix2pix AB layout (photo | colour label) plus train-id label PNGs, resized to --size "
                               "(photos bilinear, labels nearest neighbour). Frames are numbered 1..N in sorted name order.")
    prep.add_argument("--root", required=True, type=Path, help="Cityscapes root holding leftImg8bit/ and gtFine/")
    prep.add_argument("--out", required=True, type=Path, help="output folder (created)")
    prep.add_argument("--size", type=positive_int, default=256, help="output side in pixels (default 256)")
    add_quiet(prep)
    prep.set_defaults(func=_prepare)
    declare(prep, kept=["out"], inputs=["root"])

    color = data_sub.add_parser("prepare-colorization", help="colour photos -> grey L | colour AB pairs for colorization",
                                description="Make colorization pairs (the paper's BW -> color task): each photo becomes "
                                "an AB image, its lightness L as a neutral grey (A) beside the colour photo (B), both "
                                "--size x --size (bicubic; non-square photos are squeezed, as the pix2pix data sets). "
                                "train/, val/ and test/ folders under --photos are kept; a flat folder is split by "
                                "--val-fraction (every k-th photo in name order). Train on it with a colorization "
                                "variant (generators/colorization.toml: AtoB, L -> ab).")
    color.add_argument("--photos", required=True, type=Path, help="folder of colour photos (PNG or JPEG)")
    color.add_argument("--out", required=True, type=Path, help="output folder (created)")
    color.add_argument("--size", type=positive_int, default=256, help="output side in pixels (default 256)")
    color.add_argument("--half", choices=("A", "B"), help="the photos are this half of AB images (pix2pix's Cityscapes "
                       "and Facades: A); default: whole images")
    color.add_argument("--val-fraction", type=probability, default=0.1,
                       help="share of a flat folder's photos put in val/ (default 0.1)")
    add_quiet(color)
    color.set_defaults(func=_prepare_colorization)
    declare(color, kept=["out"], inputs=["photos"])

    halves = data_sub.add_parser("halves", help="write one half (A or B) of each AB image as its own PNG",
                                 description="Write the A (left) or B (right) half of every AB image in DATA/SPLIT to "
                                 "OUT/<name>.png, losslessly: e.g. the real photos of a 'real vs fake' study "
                                 "(`study create --real OUT`) or the real set of `color` / `metrics`.")
    halves.add_argument("--data", required=True, type=Path, help="data folder holding SPLIT/ with AB images")
    halves.add_argument("--split", default="val", help="split folder (default val)")
    halves.add_argument("--half", required=True, choices=("A", "B"), help="A: the left half, B: the right half")
    halves.add_argument("--out", required=True, type=Path, help="output folder, new or empty (created)")
    halves.add_argument("--overwrite", action="store_true", help="allow --out to be a folder that already holds files")
    add_quiet(halves)
    halves.set_defaults(func=_halves)
    declare(halves, folders=["out"], inputs=["data"])
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _synth(args: argparse.Namespace) -> int:
    from p2p_eval.data.synth import generate_dataset

    summary = generate_dataset(args.out, count=args.count, size=args.size, seed=args.seed, val_fraction=args.val_fraction,
                               progress=not args.quiet)
    print(f"wrote {summary['train']} train + {summary['val']} val scenes to {args.out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from p2p_eval.data.cityscapes import prepare_cityscapes

    summary = prepare_cityscapes(args.root, args.out, size=args.size, progress=not args.quiet)
    counts = ", ".join(f"{split}: {n}" for split, n in summary.items())
    print(f"wrote Cityscapes AB pairs to {args.out} ({counts})")
    return 0


def _prepare_colorization(args: argparse.Namespace) -> int:
    from p2p_eval.data.colorization import prepare_colorization

    counts = prepare_colorization(args.photos, args.out, size=args.size, half=args.half,
                                  val_fraction=args.val_fraction, progress=not args.quiet)
    print(f"wrote colorization pairs (grey L | colour photo) to {args.out} "
          f"({', '.join(f'{split}: {n}' for split, n in counts.items())})")
    return 0


def _halves(args: argparse.Namespace) -> int:
    from p2p_eval.data.aligned import write_halves

    written = write_halves(args.data, args.split, args.half, args.out, progress=not args.quiet)
    print(f"wrote the {args.half} halves of {len(written)} images to {args.out}")
    return 0
