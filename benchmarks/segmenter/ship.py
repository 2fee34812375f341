"""Ship a trained segmenter: export it as fp16 safetensors into the package and write its model card.

    python benchmarks/segmenter/ship.py --checkpoint runs/seg/cityscapes256.pt --data ../shared/data/cityscapes \\
        [--calibration reports/fcn_calibration/calibration.json] [--command "p2p-eval segmenter train ..."]

1. ``p2p_eval/segmentation/weights/cityscapes256.safetensors``: the weights in fp16 with the metadata.
2. The 500 real val photos scored with *that file* (what users get): overall and per-class scores with 95%
   bootstrap CIs; the file is written again with these scores in its metadata (``val``).
3. ``p2p_eval/segmentation/weights/cityscapes256.md``: the model card (data, recipe, the command that
   reproduces it, training time and machine, scores, calibration table, sha256).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main() -> int:
    from p2p_eval.data.cityscapes import TRAIN_CLASSES
    from p2p_eval.metrics.bootstrap import per_class_ci
    from p2p_eval.metrics.fcn_score import score_folder
    from p2p_eval.fsutil import file_sha256
    from p2p_eval.segmentation.model import export_safetensors, shipped_card, shipped_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--calibration", type=Path, help="calibration.json of benchmarks/fcn_calibration.py")
    parser.add_argument("--command", default="", help="the command that trained the checkpoint")
    parser.add_argument("--log", type=Path, help="the training log (CHECKPOINT.log.jsonl by default)")
    args = parser.parse_args()

    out = shipped_path()
    export_safetensors(args.checkpoint, out)
    per_image = out.with_suffix(".npz")
    res = score_folder(None, out, data_dir=args.data, real=True, per_image_out=per_image, progress=True)
    conf = np.load(per_image)["confusions"]
    per_image.unlink()
    cls_ci = per_class_ci(conf, n=1000, seed=0)
    val = {"split": "val", "images": res["images"], "pixel_accuracy": res["pixel_accuracy"],
           "class_accuracy": res["class_accuracy"], "class_iou": res["class_iou"], "ci95": {
               k: res["ci95"][k] for k in ("pixel_accuracy", "class_accuracy", "class_iou")},
           "iou": {c: res["per_class"][c]["iou"] for c in TRAIN_CLASSES}, "weights": "float16 (this file)"}
    export_safetensors(args.checkpoint, out, extra_meta={"val": val, "name": "cityscapes256"})
    sha = file_sha256(out)
    from p2p_eval.segmentation.model import read_meta

    meta = read_meta(out)
    log_path = args.log or args.checkpoint.with_name(args.checkpoint.name + ".log.jsonl")
    log = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()] if log_path.is_file() else []
    recipe = meta.get("recipe", {})
    lines = [
        "# Model card: `cityscapes256`, the FCN-score segmenter shipped with p2p-eval", "",
        f"- **File**: `p2p_eval/segmentation/weights/cityscapes256.safetensors` ({out.stat().st_size / 1e6:.1f} MB, "
        "fp16 weights, metadata as JSON in the safetensors header, no pickle)",
        f"- **sha256**: `{sha}` (what `sha256sum` prints; every FCN-score report prints it)",
        f"- **Model**: segmentation-models-pytorch {meta.get('smp')} `{meta['arch']}` on a `{meta['encoder']}` encoder, "
        f"19 Cityscapes train classes, input {meta['input_size']}x{meta['input_size']}, trained from scratch "
        "(no ImageNet weights: none can be downloaded here)",
        f"- **Data**: the {meta['trained_on']['images']} training frames of pix2pix's Cityscapes "
        "(`../shared/data/cityscapes/train`, 256x256 photo halves; labels = the colour halves decoded by nearest "
        "palette colour; void ignored). Validation: the 500 val frames, never seen in training.",
        f"- **Recipe**: {meta['epochs']} epochs of {recipe.get('crop')} px windows of the 256 px frames (zoom "
        f"{recipe.get('scale')}, mirror, brightness/contrast/saturation jitter 0.25, {recipe.get('rare_crop')} of "
        f"the windows centred on a class drawn by class weight), batch {meta['batch_size']}, class-balanced "
        f"cross-entropy (weights (median freq / freq)^{recipe.get('balance')}), AdamW lr {meta['lr']} (weight "
        f"decay 1e-4, one epoch warm-up, cosine decay), bf16 autocast {recipe.get('amp')}, channels_last; "
        "see `p2p_eval/segmentation/train.py`.",
        f"- **Reproduce**: `{args.command}` then `python benchmarks/segmenter/ship.py --checkpoint cityscapes256.pt --data "
        "../shared/data/cityscapes --calibration reports/fcn_calibration/calibration.json`",
        f"- **Training time**: {meta['train_seconds'] / 3600:.2f} h on {platform.machine()} CPU, 2 cores, no GPU "
        f"(torch {meta.get('torch')}); the machine was shared with other jobs part of the time, so this is an upper "
        "bound. Epoch log: `reports/segmenter/train_log.jsonl`.",
        "", "## Real-photo val FCN-score (500 frames, 256x256, this fp16 file)", "",
        "| score | value | 95% CI |", "|---|---|---|"]
    for key, label in (("pixel_accuracy", "per-pixel accuracy"), ("class_accuracy", "per-class accuracy"),
                       ("class_iou", "class IoU")):
        lo, hi = res["ci95"][key]
        lines.append(f"| {label} | {_f(res[key])} | [{_f(lo)}, {_f(hi)}] |")
    lines += ["", "| class | accuracy | 95% CI | IoU | 95% CI | pixels |", "|---|---|---|---|---|---|"]
    for k, c in enumerate(TRAIN_CLASSES):
        row = res["per_class"][c]
        a, i = cls_ci["accuracy"][k], cls_ci["iou"][k]
        lines.append(f"| {c} | {_f(row['accuracy'])} | [{_f(a[0])}, {_f(a[1])}] | {_f(row['iou'])} | "
                     f"[{_f(i[0])}, {_f(i[1])}] | {row['pixels']} |")
    if args.calibration and args.calibration.is_file():
        cal = json.loads(args.calibration.read_text())["shipped"]
        lines += ["", "## Calibration (`reports/fcn_calibration/calibration.md`)", "",
                  f"Real photos above every generated / degraded set, every paired 95% CI of (real - set) above 0: "
                  f"**{'yes' if cal['calibrated'] else 'NO'}**. Scored with sha256 `{cal['segmenter']['sha256'][:16]}...`"
                  f"{' (this file)' if cal['segmenter']['sha256'] == sha else ' (the fp32 checkpoint before export)'}.", "",
                  "| set | pixel | class | IoU | real - set (IoU) [95% CI] |", "|---|---|---|---|---|"]
        for name, sc in cal["scores"].items():
            d = cal["real_minus_set"].get(name)
            diff = "" if d is None else (f"{d['class_iou']['difference']:+.3f} [{d['class_iou']['ci95'][0]:+.3f}, "
                                         f"{d['class_iou']['ci95'][1]:+.3f}]")
            lines.append(f"| {name} | {_f(sc['pixel_accuracy'])} | {_f(sc['class_accuracy'])} | {_f(sc['class_iou'])} | {diff} |")
    if log:
        evals = [r for r in log if "val100" in r]
        lines += ["", "## Training curve (first 100 val frames, every 5 epochs)", "",
                  "| epoch | loss | val100 pixel | val100 class | val100 IoU |", "|---|---|---|---|---|"]
        lines += [f"| {r['epoch']} | {r['loss']:.3f} | {_f(r['val100']['pixel_accuracy'])} | "
                  f"{_f(r['val100']['class_accuracy'])} | {_f(r['val100']['class_iou'])} |" for r in evals]
    lines += ["", "## Limits", "",
              "- Trained and scored at 256x256 on pix2pix's JPEG-compressed Cityscapes; scores of images at other "
              "sizes are computed after resizing to 256x256.",
              "- Absolute numbers are not the paper's (Caffe FCN-8s, ImageNet-pretrained, full resolution); compare "
              "generators scored by the same sha256.", ""]
    shipped_card().write_text("\n".join(lines))
    print(f"wrote {out} (sha256 {sha}) and {shipped_card()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
