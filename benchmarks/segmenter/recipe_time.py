"""Expected time of the full-resolution FCN-score recipe (docs/fcn-score.md) on the machine it runs on.

The recipe: ``segmenter train --size 1024x512 --crop 512 --epochs 44`` on the 2975 official training frames
(U-Net/ResNet-18, batch 16, bf16 autocast, channels_last), then ``fcn-score --protocol original`` on the 500
val frames, each segmented at 2048x1024. This script times a few training steps on batches of 512x512 crops
and a few 2048x1024 forward passes, after warm-up, on ``--device``, and multiplies: steps per epoch
(2975 // 16 = 185) x 44 epochs, and 500 frames. Data loading and cropping are not timed (they overlap the
GPU work in the trainer's loop). It also counts the floating-point operations of one step and of one frame
(``torch.utils.flop_counter``), which do not depend on the machine.

    python benchmarks/segmenter/recipe_time.py --device cuda --out reports/segmenter/recipe_time.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from p2p_eval.segmentation.model import build_segmenter

FRAMES, BATCH, CROP, EPOCHS, VAL, FULL = 2975, 16, 512, 44, 500, (1024, 2048)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               dev: torch.device) -> None:
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        out = model(x)
    loss = F.cross_entropy(out.float(), y, ignore_index=255)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def forward(model: torch.nn.Module, x: torch.Tensor, dev: torch.device) -> None:
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
        model(x)


def median_seconds(fn, dev: torch.device, repeats: int, warmup: int = 2) -> float:
    times = []
    for i in range(warmup + repeats):
        _sync(dev)
        tic = time.perf_counter()
        fn()
        _sync(dev)
        if i >= warmup:
            times.append(time.perf_counter() - tic)
    return sorted(times)[len(times) // 2]


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=BATCH, help="training batch (default 16; lower it on a CPU)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = build_segmenter("unet", "resnet18").to(dev, memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 3, CROP, CROP, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 19, (args.batch, CROP, CROP), device=dev)
    frame = torch.randn(1, 3, *FULL, device=dev).contiguous(memory_format=torch.channels_last)
    step_s = median_seconds(lambda: train_step(model, opt, x, y, dev), dev, args.steps) * BATCH / args.batch
    model.eval()
    frame_s = median_seconds(lambda: forward(model, frame, dev), dev, args.steps)
    step_flops = flops(lambda: train_step(model.train(), opt, x[:1], y[:1], dev)) * BATCH
    frame_flops = flops(lambda: forward(model.eval(), frame, dev))
    steps = FRAMES // BATCH * EPOCHS
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    text = "\n".join([
        "# Expected time of the full-resolution FCN-score recipe", "",
        f"`python benchmarks/segmenter/recipe_time.py --device {args.device}`: {name}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads; median of {args.steps} after 2 warm-up runs, bf16 autocast; "
        f"training batch measured at {args.batch} and scaled to {BATCH}.", "",
        "| stage | per unit | units | expected time | GFLOP per unit |", "| --- | --- | --- | --- | --- |",
        f"| `segmenter train --size 1024x512 --crop 512 --epochs 44` | {step_s:.3f} s/step (batch 16) | {steps} steps "
        f"| {steps * step_s / 3600:.2f} h | {step_flops / 1e9:.0f} |",
        f"| `fcn-score --protocol original` (2048x1024) | {frame_s:.3f} s/frame | {VAL} frames | "
        f"{VAL * frame_s / 60:.1f} min | {frame_flops / 1e9:.0f} |", ""])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
