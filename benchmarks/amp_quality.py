"""Does bf16 autocast cost training quality?  fp32 and bf16 runs of the same row, same steps, scored alike.

Whether bf16 may be the CPU default: train pix2pix L1+cGAN (the ``quick`` preset's Table 1 row:
64x64 Cityscapes, batch 1, constant LR, test-time dropout) for the same number of steps in fp32 and under
bf16 autocast, with the same seeds, and compare

- val L1: mean absolute error (0-255) between the translated val images and the real photos at the
  training size, computed here from the PNG files with numpy;
- the FCN-score (shipped segmenter) of the translations with 95% bootstrap CIs.

Run-to-run noise is measured the same way: fp32 with another seed.  Each run lives in ``RUNS/<name>`` and
resumes (``--resume`` semantics of ``p2p-eval train``), so the comparison can be spread over sessions.
Translation runs in fp32 for every run (the generator's weights are fp32 in both cases).
Writes ``OUT/amp_quality.md`` and ``OUT/amp_quality.json``.

Usage: ``python benchmarks/amp_quality.py [--data DIR] [--runs-dir runs/amp_quality]
[--out reports/amp_quality] [--steps 1200] [--size 64] [--seeds 0 1] [--amp-seeds 0]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METRICS = ("pixel_accuracy", "class_accuracy", "class_iou")


def val_l1(fakes: Path, data: Path, size: int) -> float:
    """Mean |fake - real photo| (0-255) over the val set, the photo (A half) resized to ``size`` (bilinear)."""
    from PIL import Image

    errors = []
    for path in sorted((data / "val").iterdir()):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        ab = Image.open(path).convert("RGB")
        photo = ab.crop((0, 0, ab.width // 2, ab.height)).resize((size, size), Image.BILINEAR)
        fake = Image.open(fakes / f"{path.stem}.png").convert("RGB")
        errors.append(np.abs(np.asarray(fake, np.float64) - np.asarray(photo, np.float64)).mean())
    return float(np.mean(errors))


def run_one(name: str, amp: bool, seed: int, args: argparse.Namespace) -> dict:
    """Train (or resume) one run, translate its val set, score it; every stage skipped when its output exists."""
    from p2p_eval.config import load_generator
    from p2p_eval.metrics.fcn_score import score_folder
    from p2p_eval.train.trainer import train
    from p2p_eval.translate import translate_run

    run = args.runs_dir / name
    cfg = load_generator("l1_cgan", {"size": args.size, "epochs": 200, "lr_schedule": "constant", "test_dropout": True,
                                     "max_steps": args.steps, "seed": seed})
    result_file = run / "amp_quality.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    tic = time.perf_counter()
    train(cfg, args.data, run, device=args.device, resume=True, progress=not args.quiet,
          precision="bf16" if amp else "fp32")
    train_s = time.perf_counter() - tic
    fakes = run / "val_fakes"
    if not (run / "val_fakes.done").exists():
        translate_run(run, args.data, fakes, device=args.device, progress=not args.quiet)
        (run / "val_fakes.done").write_text("done\n")
    fcn = score_folder(fakes, data_dir=args.data, device=args.device, progress=not args.quiet)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    result = {"name": name, "amp": amp, "seed": seed, "steps": args.steps, "size": args.size,
              "train_seconds": round(train_s, 1), "val_l1": val_l1(fakes, args.data, args.size),
              "train_images_per_s": float(np.mean([r["images_per_s"] for r in log[1:]] or [log[-1]["images_per_s"]])),
              "final_losses": {k: v for k, v in log[-1].items() if k not in ("step", "epoch", "lr", "images_per_s")},
              "fcn": {m: fcn[m] for m in METRICS}, "fcn_ci95": {m: fcn.get("ci95", {}).get(m) for m in METRICS}}
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    return result


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    """The comparison table and the noise reading."""
    lines = [f"# bf16 autocast vs fp32: training quality (L1+cGAN, {args.size}x{args.size} Cityscapes, "
             f"{args.steps} steps at batch 1)", "",
             "Made by `benchmarks/amp_quality.py`. Val L1: mean absolute error (0-255) of the 500 translated val "
             "images against the real photos at the training size. FCN-score: shipped segmenter, 95% bootstrap CIs. "
             "Train images/s is what each run logged on a shared CPU (other jobs beside it): not a speed figure; "
             "`reports/bench.md` (section `train_step`) has the measured speeds.", "",
             "| run | precision | seed | val L1 | per-pixel acc. | per-class acc. | class IoU | train images/s |",
             "|---|---|---:|---:|---|---|---|---:|"]
    for r in results:
        cells = [f"{r['fcn'][m]:.3f} [{r['fcn_ci95'][m][0]:.3f}, {r['fcn_ci95'][m][1]:.3f}]" if r["fcn_ci95"][m]
                 else f"{r['fcn'][m]:.3f}" for m in METRICS]
        lines.append(f"| {r['name']} | {'bf16 autocast' if r['amp'] else 'fp32'} | {r['seed']} | {r['val_l1']:.2f} | "
                     + " | ".join(cells) + f" | {r['train_images_per_s']:.2f} |")
    fp32 = [r for r in results if not r["amp"]]
    bf16 = [r for r in results if r["amp"]]
    lines.append("")
    if len(fp32) >= 2 and bf16:
        for key, label in [("val_l1", "val L1"), *[(m, m.replace("_", " ")) for m in METRICS]]:
            get = (lambda r, k=key: r[k]) if key == "val_l1" else (lambda r, k=key: r["fcn"][k])
            noise = max(get(a) for a in fp32) - min(get(a) for a in fp32)
            gap = np.mean([get(r) for r in bf16]) - np.mean([get(r) for r in fp32])
            lines.append(f"- {label}: bf16 minus fp32 (means) {gap:+.3f}; fp32 seed-to-seed range {noise:.3f}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cityscapes",
                        help="pix2pix Cityscapes AB folder (default ../shared/data/cityscapes)")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "amp_quality", help="where the runs live")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "amp_quality", help="report folder")
    parser.add_argument("--steps", type=int, default=1200, help="training steps per run (default 1200, the quick row)")
    parser.add_argument("--size", type=int, default=64, help="image side (default 64)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="fp32 seeds (default 0 1: noise)")
    parser.add_argument("--amp-seeds", type=int, nargs="+", default=[0], help="bf16 seeds (default 0)")
    parser.add_argument("--only", help="train and score only this run name (e.g. bf16_s0); no report")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()

    plan = [(f"fp32_s{s}", False, s) for s in args.seeds] + [(f"bf16_s{s}", True, s) for s in args.amp_seeds]
    if args.only:
        plan = [p for p in plan if p[0] == args.only]
    results = [run_one(name, amp, seed, args) for name, amp, seed in plan]
    if args.only:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "amp_quality.json").write_text(json.dumps({"runs": results}, indent=2) + "\n")
    text = markdown(results, args)
    (args.out / "amp_quality.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
