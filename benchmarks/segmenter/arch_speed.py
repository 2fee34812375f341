"""Training-step time of candidate FCN-score segmenters on this machine (the shipped recipe's crop and batch).

For each (architecture, encoder): seconds per training step (forward + backward + AdamW) on a batch of
random crops, fp32 and bf16 autocast, channels_last; the ratio of each to U-Net/ResNet-18 fp32 measured in
the same run.  Writes a markdown table (``--out``).

    python benchmarks/segmenter/arch_speed.py --out reports/segmenter/arch_speed.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from p2p_eval.segmentation.model import build_segmenter

CANDIDATES = [("unet", "resnet18"), ("unet", "resnet34"), ("fpn", "resnet34"), ("deeplabv3plus", "resnet18"),
              ("linknet", "resnet18"), ("unet", "mobilenet_v2"), ("unet", "efficientnet-b0")]


def step_seconds(arch: str, encoder: str, batch: int, crop: int, amp: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = build_segmenter(arch, encoder).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 19, (batch, crop, crop))
    times = []
    for i in range(steps + 2):
        tic = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - tic)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows, base = [], None
    for arch, enc in CANDIDATES:
        params = sum(p.numel() for p in build_segmenter(arch, enc).parameters())
        fp32 = step_seconds(arch, enc, args.batch, args.crop, False, args.steps)
        bf16 = step_seconds(arch, enc, args.batch, args.crop, True, args.steps)
        base = base or fp32
        rows.append(f"| {arch} | {enc} | {params / 1e6:.1f} M | {fp32:.3f} | {bf16:.3f} | {base / fp32:.2f}x | "
                    f"{base / bf16:.2f}x | {2975 // args.batch * bf16 / 60:.1f} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        f"# Segmenter training step, batch {args.batch} of {args.crop}x{args.crop} crops, channels_last",
        "", f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}; median of {args.steps} steps after 2 warm-up steps; speed = U-Net/ResNet-18 fp32 time "
        "/ this time (same run).", "",
        "| arch | encoder | params | fp32 s/step | bf16 s/step | speed fp32 | speed bf16 | min/epoch (2975 frames, bf16) |",
        "|---|---|---:|---:|---:|---:|---:|---:|", *rows, ""])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
