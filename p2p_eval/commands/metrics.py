"""``p2p-eval metrics``: MSE / PSNR / SSIM / FID / LPIPS of generated image folders against a real folder, the
per-image metrics with the 95% bootstrap intervals the ablation tables give (MSE on [0, 1] images, as there)."""

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
        "metrics", help="PSNR, SSIM, MSE (on [0, 1] images), FID and LPIPS (local weights) against real images",
        description="Pairs real and generated images by file stem. MSE is computed on [0, 1] images (0-255 values "
        "/ 255), as the ablation tables print it; PSNR is in dB (peak 1 on [0, 1], i.e. data range 255); SSIM uses "
        "data range 255. Per-image metrics are averaged over the images, with 95%% percentile bootstrap intervals "
        "over images (the ablation tables' resamples). FID and LPIPS need weights files on disk "
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
    parser.add_argument("--half", choices=("A", "B"), help="the --real folder holds AB pairs: use the left (A) or right (B) half")
    parser.add_argument("--size", type=positive_int, help="resize every image to SIZE x SIZE first (default: as stored)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (default 16)")
    parser.add_argument("--bootstrap", type=nonnegative_int, default=1000,
                        help="bootstrap replicates for the 95%% CIs; 0 = none (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling and of lpips-diversity's "
                        "pairs (default 0)")
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
                             json_out=args.json, progress=not args.quiet, bootstrap=args.bootstrap, pairs=args.pairs,
                             seed=args.seed)
    n = result["images"]
    print(f"{n} image pair{'' if n == 1 else 's'}; MSE on [0, 1] images, PSNR in dB"
          + ("; mean [95% CI]" if args.bootstrap else "; mean"))
    for name, scores in result["metrics"].items():
        print(f"{name}: " + ", ".join(_score_text(m, v) for m, v in scores.items()))
    if "diversity" in result:
        print(f"LPIPS diversity over {', '.join(result['diversity']['sets'])}: "
              f"{_score_text('lpips_diversity', result['diversity']['lpips_diversity'])}")
    if args.json:
        print(f"json: {args.json}")
    return 0


def _score_text(metric: str, value: dict) -> str:
    """``psnr 23.4512 [23.1020, 23.8120]``: the mean (FID: the value) and its 95% interval when it has one; "inf"
    for an undefined mean (PSNR of identical images)."""
    mean = value["value"] if metric == "fid" else value["mean"]
    if mean is None:
        return f"{metric} inf"
    lo, hi = value.get("ci95") or [None, None]
    return f"{metric} {mean:.4f}" + ("" if lo is None else f" [{lo:.4f}, {hi:.4f}]")
