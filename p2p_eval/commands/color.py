"""``p2p-eval color``: Lab colour distributions of generated image sets against the real set (Figure 7)."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.cli_args import add_deprecated, add_quiet, positive_int
from p2p_eval.outputs import declare

ORDER = 40


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``color``."""
    parser = sub.add_parser(
        "color", help="Lab colour histograms and their intersection with the real set (the paper's Figure 7)",
        description="Marginal L / a / b histograms (sRGB -> CIE Lab as skimage.color.rgb2lab, D65; one bin per unit: "
        "L in [0, 100], a and b in [-128, 128]) of the real folder and each fake folder, scored by histogram "
        "intersection sum_i min(p_i, q_i) against the real set (1 = identical; higher is better).")
    parser.add_argument("--real", type=Path, required=True, metavar="DIR", help="folder of real photos")
    add_image_sets(parser, "folder of generated images, one per real image (repeat for several sets)")
    parser.add_argument("--plot", type=Path, help="write the Figure 7 style plot (PNG) here: log10 probability per "
                        "L / a / b bin, one legend with each set's intersections; empty bins are gaps")
    parser.add_argument("--json", type=Path, help="write the scores, bins and bin counts (JSON) here")
    parser.add_argument("--size", type=positive_int, help="resize every image to SIZE x SIZE first (default: as stored)")
    parser.add_argument("--half", choices=("A", "B"), help="the --real folder holds AB pairs: use the left (A) or right (B) half")
    parser.add_argument("--class", dest="class_name", metavar="NAME",
                        help="only pixels of this Cityscapes class (e.g. car, road); needs --real-labels")
    parser.add_argument("--real-labels", type=Path, metavar="DIR",
                        help="label maps of the real images (train ids, labelIds or colour PNGs), same file stems")
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="images per progress-bar step (default 16); each image is counted as soon as it is decoded")
    add_quiet(parser)
    parser.set_defaults(func=_color)
    declare(parser, files=["plot", "json"], inputs=["real", "images", "real_labels"])


def add_image_sets(parser: argparse.ArgumentParser, help_images: str) -> None:
    """``--images DIR`` (repeatable, required) and ``--names``, with the old ``--fake`` / ``--labels`` hidden."""
    images = parser.add_mutually_exclusive_group(required=True)
    images.add_argument("--images", type=Path, action="append", metavar="DIR", help=help_images)
    add_deprecated(images, "--fake", "--images", "images", append=True, type=Path)
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--names", help="comma-separated names of the --images sets, in order (default: folder names)")
    add_deprecated(names, "--labels", "--names", "names")


def set_names(folders: list[Path], names: str | None) -> list[str]:
    """Names of the image sets: ``--names`` split on commas, else the folder names (made unique)."""
    from p2p_eval.errors import UserError

    if names is not None:
        given = [s.strip() for s in names.split(",")]
        if len(given) != len(folders) or len(set(given)) != len(given) or "" in given:
            count = f"{len(folders)} distinct names" if len(folders) != 1 else "1 name"
            raise UserError(f"--names {names!r} must give {count}, one per --images, comma-separated")
        return given
    names: list[str] = []
    for folder in folders:
        name = folder.name or str(folder)
        names.append(name if name not in names else f"{name}_{len(names) + 1}")
    return names


def _color(args: argparse.Namespace) -> int:
    from p2p_eval.metrics.color import CHANNELS, compare_sets

    names = set_names(args.images, args.names)
    result = compare_sets(args.real, dict(zip(names, args.images)), plot=args.plot, json_out=args.json,
                          size=args.size, half=args.half, class_name=args.class_name, labels_dir=args.real_labels,
                          batch_size=args.batch_size, progress=not args.quiet)
    width = max(len(n) for n in names + ["set"])
    n = result["images"]["real"]
    print(f"histogram intersection with the real set ({n} image{'' if n == 1 else 's'}"
          + (f", class {args.class_name}" if args.class_name else "") + ")")
    print(f"{'set':<{width}}  " + "  ".join(f"{c:>6}" for c in CHANNELS))
    for name, scores in result["intersection"].items():
        print(f"{name:<{width}}  " + "  ".join(f"{scores[c]:6.4f}" for c in CHANNELS))
    for what, path in (("plot", args.plot), ("json", args.json)):
        if path is not None:
            print(f"{what}: {path}")
    return 0
