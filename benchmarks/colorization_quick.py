"""Colorization quick report: pix2pix L1+cGAN beside the L2-regression baseline on photos we have.

The paper's colorization setting (Table 5, Figure 9; appendix 6.2 "BW -> color": L -> ab, batch 4, mirroring
only) on the photos of pix2pix's Cityscapes and CMP Facades sets (``data prepare-colorization --half A``), at the
quick preset's scale: 64x64, a budget of ``--images`` training images per row (default 4800: 1200 steps at batch
4; the paper: ~6 epochs of ImageNet's 1.2 million photos). Rows: ``generators/colorization.toml`` (L1+cGAN) and
``generators/colorization_l2.toml`` (a squared error on the same U-Net, the paper's "L2 regression" row).

Per data set and row, on the val photos: the Lab histogram intersections with the real photos (pix2pix
Figure 7, ``metrics/color.py``; the figure itself as ``figure7_<data>.png``), PSNR / SSIM against the real
photo (``metrics/image.py``, bootstrap 95% CIs), and the mean chroma sqrt(a^2 + b^2) of the outputs beside the
real photos' (the paper's failure mode: "a grayscale or desaturated result"). A sample grid per data set
(grey input | each row | real photo). Every stage resumes: a finished run, translation or score is reused.

    python benchmarks/colorization_quick.py --out reports/quick/colorization --runs runs/colorization
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from p2p_eval.ablation.figures import sample_grid
from p2p_eval.config import load_generator
from p2p_eval.data.colorization import prepare_colorization
from p2p_eval.data.lab import AB_SCALE, split_lab
from p2p_eval.imageio import list_images, read_image, to_unit_range
from p2p_eval.metrics.color import compare_sets
from p2p_eval.metrics.image import compare_folders
from p2p_eval.train.trainer import train
from p2p_eval.translate import translate_run

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ROWS = {"colorization": "L1+cGAN (pix2pix)", "colorization_l2": "L2 regression (same U-Net)"}
#: The paper's Table 5 (% of trials on which Turkers took the colorization for the real photo).
PAPER = {"colorization": "22.5% +- 1.6%", "colorization_l2": "16.3% +- 2.4% (the L2 variant of Zhang et al.)"}


def mean_chroma(folder: Path, half: str | None = None) -> float:
    """Mean sqrt(a^2 + b^2) (CIE Lab units) over every pixel of the folder's images (or their ``half``)."""
    values = []
    for path in list_images(folder):
        image = read_image(path)
        if half:
            w = image.shape[-1] // 2
            image = image[..., w:] if half == "B" else image[..., :w]
        ab = split_lab(to_unit_range(image))[1] * AB_SCALE
        values.append(float(ab.pow(2).sum(0).sqrt().mean()))
    return float(np.mean(values))


def training_seconds(run: Path) -> float:
    """Wall time of a finished run: from its config.toml (written first) to its DONE marker (written last)."""
    return (run / "DONE").stat().st_mtime - (run / "config.toml").stat().st_mtime


def run_row(generator: str, data: Path, runs: Path, args: argparse.Namespace) -> Path:
    """Train (or resume) one row and translate its val photos; returns the folder of translations."""
    cfg = load_generator(generator, {"size": args.size, "max_steps": -(-args.images // 4), "epochs": 10_000})
    run = runs / generator
    fakes = run / "val_fakes"
    if not (run / "DONE").exists():
        train(cfg, data, run, resume=(run / "checkpoints" / "last.pt").exists(), progress=True, precision="fp32")
    if not fakes.is_dir() or len(list_images(fakes)) != len(list_images(data / "val")):
        translate_run(run, data, fakes, split="val")
    return fakes


def score_set(name: str, photos: Path, args: argparse.Namespace) -> dict:
    """Prepare one data set, run both rows, score them; writes the sample grid and Figure 7 of ``name``."""
    data = args.runs / f"{name}_pairs"
    if not (data / "val").is_dir():
        prepare_colorization(photos, data, size=args.size, half="A")
    fakes = {gen: run_row(gen, data, args.runs / name, args) for gen in ROWS}
    seconds = sum(training_seconds(args.runs / name / gen) for gen in ROWS)
    args.out.mkdir(parents=True, exist_ok=True)
    sample_grid(args.out / f"samples_{name}.png", data, "AtoB", [(ROWS[g], f) for g, f in fakes.items()])
    hist = compare_sets(data / "val", {ROWS[g]: f for g, f in fakes.items()}, plot=args.out / f"figure7_{name}.png",
                        half="B", size=args.size, progress=False)
    image = compare_folders(data / "val", {g: f for g, f in fakes.items()}, ["psnr", "ssim"], half="B",
                            size=args.size, progress=False)
    rows = {g: {"label": ROWS[g], "paper_table5": PAPER[g], "lab_intersection": hist["intersection"][ROWS[g]],
                "psnr": image["metrics"][g]["psnr"]["mean"], "psnr_ci95": image["metrics"][g]["psnr"]["ci95"],
                "ssim": image["metrics"][g]["ssim"]["mean"], "ssim_ci95": image["metrics"][g]["ssim"]["ci95"],
                "chroma": mean_chroma(f)} for g, f in fakes.items()}
    counts = {s: len(list_images(data / s)) for s in ("train", "val") if (data / s).is_dir()}
    return {"data": name, "photos": str(photos.relative_to(REPO.parent)) if photos.is_relative_to(REPO.parent) else str(photos),
            "pairs": counts, "real_chroma": mean_chroma(data / "val", half="B"), "rows": rows,
            "seconds": round(seconds, 1)}


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = ["# Colorization at the quick scale: L1+cGAN vs L2 regression", "",
             f"`python benchmarks/colorization_quick.py` ({args.size}x{args.size}, {args.images} training images per "
             f"row = {-(-args.images // 4)} steps at batch 4, fp32, {torch.get_num_threads()} CPU threads). Rows: "
             "`generators/colorization.toml`, `generators/colorization_l2.toml`; data: the photos (A halves) of "
             "pix2pix's AB files through `p2p-eval data prepare-colorization --half A`. Scores on the val photos.", ""]
    for res in results:
        lines += [f"## {res['data']} ({res['pairs'].get('train', 0)} train / {res['pairs'].get('val', 0)} val photos; "
                  f"both rows trained in {res['seconds'] / 60:.0f} min wall time on a shared machine)", "",
                  "| row | Lab hist. L | a | b | PSNR (dB) [95% CI] | SSIM [95% CI] | mean chroma | paper Table 5 (AMT) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in res["rows"].values():
            inter = row["lab_intersection"]
            lines.append(f"| {row['label']} | {inter['L']:.3f} | {inter['a']:.3f} | {inter['b']:.3f} | "
                         f"{row['psnr']:.2f} [{row['psnr_ci95'][0]:.2f}, {row['psnr_ci95'][1]:.2f}] | "
                         f"{row['ssim']:.3f} [{row['ssim_ci95'][0]:.3f}, {row['ssim_ci95'][1]:.3f}] | "
                         f"{row['chroma']:.1f} | {row['paper_table5']} |")
        lines += [f"| real photos | 1 | 1 | 1 | | | {res['real_chroma']:.1f} | |", "",
                  f"![samples](samples_{res['data']}.png)", "", f"![Figure 7](figure7_{res['data']}.png)", ""]
    lines += ["## Differences from the paper", "",
              "- photos: Cityscapes street scenes and CMP facades, not ImageNet; scored on their val photos, not on the "
              "ImageNet test split of Zhang et al.",
              f"- {args.size}x{args.size} (paper 256x256), {args.images} training images per row (paper ~6 epochs of "
              "1.2 million photos); photos squeezed to squares as pix2pix's AB files are",
              "- the L2 row is the pix2pix U-Net trained with a squared error; the paper's row is the L2 variant of "
              "Zhang et al.'s own colorization network",
              "- the paper's colorization numbers are AMT fooling rates (Table 5); these are automatic measures",
              "- single runs, other random numbers than the paper's", ""]
    lines += ["Lab histogram intersections (pix2pix Figure 7) compare the colour distribution of each row's outputs "
              "with the real photos'; mean chroma sqrt(a^2 + b^2) shows desaturation (the paper's L2 rows and the cGAN's "
              "failure mode). The paper's colorization numbers are AMT 'real vs fake' rates (Table 5) on ImageNet; "
              "run them with `benchmarks/studies/pix2pix_colorization.toml`. Single runs."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "quick" / "colorization")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "colorization")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=4800, help="training images per row (default 4800)")
    parser.add_argument("--sets", default="cityscapes,facades", help="which of pix2pix's sets to take photos from")
    args = parser.parse_args()
    results = [score_set(name, SHARED / name, args) for name in args.sets.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps({"size": args.size, "images_per_row": args.images,
                                                      "results": results}, indent=1) + "\n")
    (args.out / "report.md").write_text(markdown(results, args))
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
