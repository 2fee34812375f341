"""Images/s of one full pix2pix training step (D step + G step), optimised path vs plain eager fp32.

The step is the trainer's own (:func:`p2p_eval.train.loop.train_step`): U-Net (log2(size) downs, 54.4 M
parameters at 256) + 70x70 PatchGAN, L1+cGAN, Adam, on random tensors (data loading excluded).
Paths, all measured in the same run on the same models' initial weights:

- ``plain``: eager, fp32, contiguous (NCHW) memory — the baseline;
- ``channels_last``: weights and activations in NHWC;
- ``optimised``: channels_last + bf16 autocast — what ``p2p-eval train --amp`` runs on a GPU;
- ``compiled`` (with ``--compile``): the optimised path under ``torch.compile``.

Prints a markdown table with the ratio of each path's images/s to ``plain``; ``--json OUT`` writes the
same figures (``make bench`` calls every ``benchmarks/perf/*.py`` with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from p2p_eval.config import TrainConfig
from p2p_eval.device import resolve_device
from p2p_eval.models import build_discriminator, build_generator
from p2p_eval.train.loop import StepModels, train_step

PATHS = {"plain": (False, False, False), "channels_last": (True, False, False), "optimised": (True, True, False),
         "compiled": (True, True, True)}


def make_models(cfg: TrainConfig, device: torch.device, channels_last: bool, amp: bool, compile_: bool) -> StepModels:
    """Fresh G, D and Adam optimisers (seed 0) for one path."""
    torch.manual_seed(0)
    gen, disc = build_generator(cfg).to(device), build_discriminator(cfg).to(device)
    if channels_last:
        gen.to(memory_format=torch.channels_last)
        disc.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    if compile_:
        gen, disc = torch.compile(gen), torch.compile(disc)
    return StepModels(gen, disc, opt_g, opt_d, cfg, amp=amp, channels_last=channels_last)


def measure(cfg: TrainConfig, device: torch.device, path: str, steps: int, warmup: int) -> dict:
    """Time ``steps`` steps after ``warmup`` untimed ones; return images/s and ms/step."""
    models = make_models(cfg, device, *PATHS[path])
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(cfg.batch_size, 3, cfg.size, cfg.size, generator=g) * 2 - 1).to(device)
    y = (torch.rand(cfg.batch_size, 3, cfg.size, cfg.size, generator=g) * 2 - 1).to(device)
    for _ in range(warmup):
        train_step(models, x, y)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        losses = train_step(models, x, y)
    float(losses["G"])
    sync(device)
    elapsed = time.perf_counter() - start
    return {"images_per_s": cfg.batch_size * steps / elapsed, "ms_per_step": 1000 * elapsed / steps}


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1; more with --compile)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256], help="image sides (default 256)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10], help="batch sizes (default 1 10)")
    parser.add_argument("--compile", action="store_true", help="also measure the optimised path under torch.compile")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    paths = [p for p in PATHS if p != "compiled" or args.compile]
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            cfg = TrainConfig(name="l1_cgan", size=size, batch_size=batch).resolved()
            base = None
            for path in paths:
                result = measure(cfg, device, path, args.steps, args.warmup)
                base = base or result["images_per_s"]
                rows.append({"size": size, "batch": batch, "path": path, **result,
                             "ratio_vs_plain": result["images_per_s"] / base})
                print(f"  size {size} batch {batch} {path}: {result['images_per_s']:.3f} images/s", file=sys.stderr, flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"Full D+G step, U-Net + 70x70 PatchGAN, L1+cGAN, on {device.type} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {args.steps} timed steps after {args.warmup} warm-up\n")
    print("| size | batch | path | images/s | ms/step | vs plain |")
    print("|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['batch']} | {r['path']} | {r['images_per_s']:.3f} | {r['ms_per_step']:.0f} | "
              f"{r['ratio_vs_plain']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"device": device.type, "device_name": name, "torch": torch.__version__,
                                         "threads": torch.get_num_threads(), "steps": args.steps, "rows": rows},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
