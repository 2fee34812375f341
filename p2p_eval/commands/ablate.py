"""``p2p-eval ablate``: regenerate the paper's Tables 1-3, 6 and Figure 7, and the comparison of
"Modified Pix2Pix Conditional Adversarial Networks for Image-to-Image Translation" on Facades (train, translate, score, report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2p_eval.cli_args import add_quiet, positive_int
from p2p_eval.device import PRECISIONS
from p2p_eval.outputs import declare

ORDER = 60


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ablate``."""
    p = sub.add_parser("ablate", help="regenerate Tables 1-3, 6, Figure 7 and the Modified-pix2pix table (train, translate, score, report)",
                       description="Train every row of the chosen tables that has no finished run (runs are shared "
                       "between tables and reused when their config, code and data are unchanged), translate the val "
                       "set, score it (FCN-score for Tables 1-3; decoded label maps for Table 6; image metrics for the "
                       "Facades table 'modified') and write tableN.md/.csv, figure7.png/.json, report.json and "
                       "index.html. Each report names the preset's reference (the paper, or the public PyTorch code) and "
                       "lists the differences from it that remain. A run made by other code or from other data content "
                       "is stale: named, flagged in the report, and retrained only with --retrain-stale.")
    p.add_argument("--table", default="all", help="1, 2, 3, 6, modified, blog, a list such as 1,6, or all (default all: "
                   "the Cityscapes tables 1, 2, 3, 6; 'modified' (the \"Modified Pix2Pix\" comparison) and 'blog' (the "
                   "blog post's ResNet network beside pix2pix) run on Facades in their own call)")
    p.add_argument("--data", required=True, type=Path, help="AB data folder with train/ and val/, photo left (pix2pix's "
                   "Cityscapes for tables 1-3 and 6, its Facades for 'modified'); checked against the tables")
    p.add_argument("--segmenter", type=Path, help="FCN-score segmenter checkpoint for tables 1-3 (default: the shipped "
                   "Cityscapes segmenter; make another with p2p-eval segmenter train)")
    p.add_argument("--lpips-weights", type=Path, help="image-metric table: torchvision AlexNet weights "
                   "(alexnet-owt-7be5be79.pth) to add LPIPS (default $P2P_EVAL_LPIPS_WEIGHTS; without: no LPIPS column)")
    p.add_argument("--lpips-lin", type=Path, help="LPIPS v0.1 linear layers alex.pth (default torchmetrics' copy)")
    p.add_argument("--out", required=True, type=Path, help="report folder, e.g. reports/smoke")
    p.add_argument("--preset", choices=("paper", "public", "quick", "smoke"),
                   help="required: smoke (32 px, 120 images per row: minutes on a CPU), quick (64 px, 1200 images per "
                   "row: hours on a 2-core CPU), paper (how the paper's tables were made: 256 px, 200 epochs per row, "
                   "fp32, batch norm on the U-Net bottleneck: needs a GPU) or public (the public PyTorch code's "
                   "defaults: linear decay over the last 100 of 200 epochs, its dropout layers, fp32: needs a GPU)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"),
                   help="where the training runs live (default ./runs, git-ignored; reused across reports)")
    p.add_argument("--launcher", default="local", choices=("local", "slurm"), help="local (default) or slurm (submitit)")
    p.add_argument("--gpus", help="local launcher: comma-separated GPU ids, one row per GPU at once (e.g. 0,1,2,3)")
    p.add_argument("--resume", action="store_true", help="continue unfinished runs (finished runs are always reused; "
                   "without it unfinished runs stop the command)")
    p.add_argument("--retrain-stale", action="store_true", help="retrain stale runs (made by other code or from other "
                   "data content; their folders are moved to RUNS/stale/)")
    p.add_argument("--rescore", action="store_true", help="only score finished runs with --segmenter (translating "
                   "where needed); trains nothing, lists and skips unfinished runs")
    p.add_argument("--epochs", type=positive_int, help="epochs per row (overrides the preset and drops its image budget)")
    p.add_argument("--max-steps", type=positive_int, help="training steps per row (overrides the preset's image budget)")
    p.add_argument("--size", type=unet_size, help="image side (overrides the preset; U-Net depth log2(size))")
    p.add_argument("--bottleneck-norm", action=argparse.BooleanOptionalAction,
                   help="batch norm on the U-Net / encoder-decoder bottleneck of every batch-norm row (the paper's "
                   "network, errata 6.3); --no-bottleneck-norm: without it (the public code's fix). Default: the "
                   "preset's (paper: on; public: off; quick, smoke: each generator file's, off)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="training precision of every row: fp32, bf16 (autocast) or auto (bf16 where native). Default: "
                   "the preset's (paper, public: fp32; quick, smoke: auto). An explicit precision is part of the "
                   "run's key: runs of another precision are not reused")
    p.add_argument("--report-name", help="name shown in the report (default the --out folder name)")
    p.add_argument("--data-name", help="what --data holds, for the report's titles, e.g. 'pix2pix Cityscapes' "
                   "(default the --data folder name)")
    p.add_argument("--device", default="auto", help="local launcher without --gpus: auto, cpu, cuda or cuda:N")
    p.add_argument("--slurm-partition", help="Slurm partition")
    p.add_argument("--slurm-time", type=positive_int, default=24 * 60, help="Slurm time limit per row in minutes (default 1440)")
    p.add_argument("--slurm-gpus", type=positive_int, default=1, help="GPUs per Slurm job (default 1)")
    add_quiet(p)
    p.set_defaults(func=_ablate)
    declare(p, kept=["out", "runs_dir"], inputs=["data", "segmenter"])


def unet_size(text: str) -> int:
    """``--size``: a power of two >= 2, since every table's generator has depth log2(size) (U-Net, encoder-decoder)."""
    size = positive_int(text)
    if size < 2 or size & (size - 1):
        raise argparse.ArgumentTypeError(f"{text}: give a power of two >= 2 (the tables' generators are "
                                         "log2(size) layers deep), e.g. 64 or 256")
    return size


def _ablate(args: argparse.Namespace) -> int:
    from p2p_eval.ablation import run_ablation

    overrides = {"epochs": args.epochs, "max_steps": args.max_steps, "size": args.size,
                 "bottleneck_norm": args.bottleneck_norm}
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    report = run_ablation(args.table, args.data, args.segmenter, args.out, preset=args.preset, launcher=args.launcher,
                          gpus=gpus, resume=args.resume, overrides=overrides, runs_dir=args.runs_dir, device=args.device,
                          report_name=args.report_name, data_name=args.data_name, progress=not args.quiet, retrain_stale=args.retrain_stale,
                          rescore=args.rescore, lpips_weights=args.lpips_weights, lpips_lin=args.lpips_lin,
                          precision=args.precision,
                          slurm={"partition": args.slurm_partition, "time_min": args.slurm_time,
                                 "gpus_per_job": args.slurm_gpus})
    print(f"report: {report}/index.html (tables: {', '.join(str(p) for p in sorted(Path(report).glob('*.md')))})")
    return 0
