"""``p2p-eval metrics``: MSE / PSNR / SSIM / FID / LPIPS of generated image folders against a real folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.cli_args import add_quiet, nonnegative_int, positive_int
from p2p_eval.commands.color import add_image_sets
from p2p_eval.outputs import declare

ORDER = 41


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``metrics``."""
    parser = sub.add_parser(
        "metrics", help="PSNR, SSIM, MSE (data range 255), FID and LPIPS (local weights) against real images",
        description="Pairs real and generated images by file stem. FID and LPIPS need weights files on disk "
        "(--fid-weights / P2P_EVAL_FID_WEIGHTS, --lpips-weights / P2P_EVAL_LPIPS_WEIGHTS); nothing is downloaded.")
    parser.add_argument("--real", type=Path, required=True, metavar="DIR", help="folder of real (target) images")
    add_image_sets(parser, "folder of generated images named like the real ones (repeat for several sets)")
    parser.add_argument("--metric", default="psnr,ssim",
                        help="comma-separated: mse, psnr, ssim, fid, lpips, lpips_diversity, lpips-diversity (default "
                        "psnr,ssim); a folder of samples (translate --samples K) takes fid and lpips-diversity")
    parser.add_argument("--json", type=Path, help="write means and per-image values (JSON) here")
    parser.add_argument("--fid-weights", type=Path, help="torchvision Inception-v3 state dict or TorchScript extractor")
    parser.add_argument("--lpips-weights", type=Path, help="torchvision AlexNet state dict or TorchScript backbone")
    parser.add_argument("--lpips-lin", type=Path, help="LPIPS v0.1 linear layers (default: torchmetrics' installed alex.pth)")
    parser.add_argument("--pairs", type=positive_int, default=2000, help="lpips-diversity: random pairs of samples "
                        "of one input (default 2000)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="lpips-diversity: seed of the pairs (default 0)")
    parser.add_argument("--half", choices=("A", "B"), help="the --real folder holds AB pairs: use the left (A) or right (B) half")
    parser.add_argument("--size", type=positive_int, help="resize every image to SIZE x SIZE first (default: as stored)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (default 16)")
    add_quiet(parser)
    parser.set_defaults(func=_metrics)
    declare(parser, files=["json"], inputs=["real", "images"])


def _metrics(args: argparse.Namespace) -> int:
    from p2p_eval.commands.color import set_names
    from p2p_eval.metrics.image import compare_folders, parse_metrics

    names = set_names(args.images, args.names)
    result = compare_folders(args.real, dict(zip(names, args.images)), parse_metrics(args.metric),
                             fid_weights=args.fid_weights, lpips_weights=args.lpips_weights, lpips_lin=args.lpips_lin,
                             half=args.half, size=args.size, device=args.device, batch_size=args.batch_size,
                             json_out=args.json, progress=not args.quiet, pairs=args.pairs, seed=args.seed)
    print(f"{result['images']} images, data range 255")
    for name, scores in result["metrics"].items():
        parts = [f"{m} {v['value'] if m == 'fid' else v['mean']:.4f}" if (v.get("value", v.get("mean")) is not None)
                 else f"{m} inf" for m, v in scores.items()]
        print(f"{name}: " + ", ".join(parts))
    if "diversity" in result:
        print(f"LPIPS diversity over {', '.join(result['diversity']['sets'])}: "
              f"{result['diversity']['lpips_diversity']['mean']:.4f}")
    if args.json:
        print(f"json: {args.json}")
    return 0
