"""FCN-score throughput: images/s of scoring Cityscapes val photos at 256x256 (decode + segment +
accumulate), the pipelined path of ``p2p-eval fcn-score`` (DataLoader workers decode the next batch
while the model runs a batch; confusion matrices accumulated on the device) against a plain loop that
decodes, segments and accumulates one image at a time.  Both paths must give the same confusion matrix (up to
argmax ties flipped by batched rounding, < 0.1% of pixels).

The segmenter is the shipped default (``p2p-eval segmenter info``) unless ``--segmenter`` names another.
Usage: ``python benchmarks/perf/fcn_score.py [--data DIR] [--segmenter SEG]
[--limit N] [--batch-size 8] [--device auto] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def one_at_a_time(model: torch.nn.Module, meta: dict, dataset, device: torch.device) -> torch.Tensor:
    """The baseline: decode one frame, segment it, add it to the matrix; no batching, no workers."""
    from p2p_eval.confusion import ConfusionMatrix
    from p2p_eval.segmentation.model import predict

    cm = ConfusionMatrix(len(meta["classes"]), device=device)
    with torch.inference_mode():
        for i in range(len(dataset)):
            item = dataset[i]
            pred = predict(model, meta, item["image"][None].to(device))
            cm.update(pred, item["label"][None].to(device))
    return cm.total.cpu()


def main() -> int:
    from p2p_eval.device import resolve_device
    from p2p_eval.metrics.fcn_score import score_pairs
    from p2p_eval.segmentation.data import SegmentationPairs, default_workers, split_pairs
    from p2p_eval.segmentation.model import load_segmenter

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cityscapes",
                        help="AB data folder whose val split is scored (default ../shared/data/cityscapes)")
    parser.add_argument("--segmenter", type=Path, help="segmenter file (default: the shipped one)")
    parser.add_argument("--limit", type=int, default=500, help="score the first N val frames (default 500)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch of the pipelined path (default 8)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    model, meta = load_segmenter(args.segmenter, device)
    dataset = SegmentationPairs(split_pairs(args.data, "val")[: args.limit], int(meta["input_size"]))
    n = len(dataset)
    one_at_a_time(model, meta, torch.utils.data.Subset(dataset, range(min(2, n))), device)  # warm-up

    tic = time.perf_counter()
    _, cm = score_pairs(model, meta, dataset, device, batch_size=args.batch_size, progress=False, bootstrap=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    pipelined_s = time.perf_counter() - tic
    tic = time.perf_counter()
    baseline = one_at_a_time(model, meta, dataset, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    loop_s = time.perf_counter() - tic
    # Batched and single-image convolutions may round differently; allow a few flipped argmax pixels.
    flipped = float((baseline - cm.total.cpu()).abs().sum()) / 2 / max(1, int(baseline.sum()))
    if flipped > 1e-3:
        raise SystemExit(f"pipelined and one-at-a-time confusion matrices differ on {flipped:.2%} of pixels")

    size = meta["input_size"]
    result = {"images": n, "size": size, "device": str(device), "segmenter": f"{meta['arch']}/{meta['encoder']}",
              "torch_threads": torch.get_num_threads(), "workers": default_workers(), "batch_size": args.batch_size,
              "pipelined_images_per_s": n / pipelined_s, "one_at_a_time_images_per_s": n / loop_s,
              "speedup": loop_s / pipelined_s, "pixels_differing": flipped}
    print(f"### FCN-score throughput ({n} Cityscapes val frames at {size}x{size}, {result['segmenter']}, {device}, "
          f"{result['torch_threads']} torch threads, {result['workers']} decode workers)\n")
    print("| path | seconds | images/s |\n| --- | --- | --- |")
    print(f"| pipelined (batch {args.batch_size}, workers decode ahead) | {pipelined_s:.1f} | {n / pipelined_s:.1f} |")
    print(f"| one image at a time | {loop_s:.1f} | {n / loop_s:.1f} |")
    print(f"\nspeed-up: {result['speedup']:.2f}x (confusion matrices agree on {1 - flipped:.4%} of pixels)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
