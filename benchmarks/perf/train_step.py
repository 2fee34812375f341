"""Images/s of one full pix2pix training step (D step + G step): what ``p2p-eval train`` runs vs the
public PyTorch code's path, measured in the same run.

The step is the trainer's own (:func:`p2p_eval.train.loop.train_step`): U-Net (log2(size) downs, 54,413,955
parameters at 256: the public code's ``unet_256`` layer layout, checked in ``tests/models``) + 70x70
PatchGAN, L1+cGAN, on random tensors (data loading excluded).  Paths, all on the same initial weights:

- ``public``: eager, fp32, NCHW, ``torch.optim.Adam`` with its defaults (a per-tensor loop on CPU): what
  the public PyTorch code runs; the baseline every ratio is measured against;
- ``fp32``: the trainer in fp32 (``--precision fp32``): fused Adam (:func:`p2p_eval.train.loop.adam`),
  channels_last on CUDA;
- ``channels_last``: ``fp32`` with weights and activations in NHWC on any device (the candidate for CPUs);
- ``bf16``: the trainer under bf16 autocast (``--precision bf16``);
- ``compiled`` (with ``--compile``): ``bf16`` under ``torch.compile``.

``p2p-eval train`` runs ``bf16`` by default where bf16 is native (``--precision auto``,
:func:`p2p_eval.device.resolve_precision`), ``fp32`` elsewhere; the header says which one is the default here.

The paths take turns: each is built and warmed up once, all run one untimed round, then each is timed for
``--steps`` steps per round over ``--rounds`` rounds (in a rotated order each round), and each ratio is the
median of the per-round ratios to ``public``, so that a machine that is slower for a while (a busy
neighbour) slows every path alike.

Also the fixed costs of a run at each size: building G, D and the optimisers, and writing one checkpoint
(G, D, both Adam states: what resume needs), with its size.  ``--vs-eager``: only the comparison behind
the bf16 default (batch 1 at 256: ``public``, ``fp32``, ``bf16``, 5 rounds).  Prints markdown tables; ``--json OUT``
writes the figures (``make bench`` calls every ``benchmarks/perf/*.py`` with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from p2p_eval.config import TrainConfig
from p2p_eval.device import resolve_device, resolve_precision
from p2p_eval.models import build_discriminator, build_generator
from p2p_eval.train.checkpoint import Position, save_checkpoint
from p2p_eval.train.loop import StepModels, adam, lr_factor, train_step

#: path -> (trainer's fused Adam, channels_last (None: as the trainer on this device), bf16 autocast, compile)
PATHS = {"public": (False, False, False, False), "fp32": (True, None, False, False),
         "channels_last": (True, True, False, False), "bf16": (True, None, True, False),
         "compiled": (True, None, True, True)}


def make_models(cfg: TrainConfig, device: torch.device, trainer_adam: bool, channels_last: bool | None, amp: bool,
                compile_: bool) -> StepModels:
    """Fresh G, D and Adam optimisers (seed 0) for one path."""
    torch.manual_seed(0)
    gen, disc = build_generator(cfg).to(device), build_discriminator(cfg).to(device)
    if channels_last is None:
        channels_last = device.type == "cuda"  # as p2p_eval.train.trainer.train
    if channels_last:
        gen.to(memory_format=torch.channels_last)
        disc.to(memory_format=torch.channels_last)
    if trainer_adam:
        opt_g, opt_d = adam(gen.parameters(), cfg, device), adam(disc.parameters(), cfg, device)
    else:
        opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    if compile_:
        gen, disc = torch.compile(gen), torch.compile(disc)
    return StepModels(gen, disc, opt_g, opt_d, cfg, amp=amp, channels_last=channels_last)


def fixed_costs(cfg: TrainConfig, device: torch.device) -> dict:
    """Seconds to build the models and optimisers, and to write one full checkpoint after a step (and its MB)."""
    tic = time.perf_counter()
    models = make_models(cfg, device, *PATHS["fp32"])
    build_s = time.perf_counter() - tic
    x = torch.zeros(cfg.batch_size, 3, cfg.size, cfg.size, device=device)
    train_step(models, x, x)  # Adam states exist after the first step
    factor = lr_factor(cfg.lr_schedule, cfg.epochs)
    sched_g = torch.optim.lr_scheduler.LambdaLR(models.opt_g, factor)
    sched_d = torch.optim.lr_scheduler.LambdaLR(models.opt_d, factor)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.pt"
        tic = time.perf_counter()
        save_checkpoint(path, models, sched_g, sched_d, {}, Position(epoch=0, epoch_offset=1, step=1))
        save_s = time.perf_counter() - tic
        megabytes = path.stat().st_size / 2**20
    return {"size": cfg.size, "build_s": build_s, "checkpoint_s": save_s, "checkpoint_mb": megabytes}


class Timed:
    """One path's models and fixed random batch, warmed up, ready to be timed again and again."""

    def __init__(self, cfg: TrainConfig, device: torch.device, path: str, warmup: int) -> None:
        self.cfg, self.device = cfg, device
        self.models = make_models(cfg, device, *PATHS[path])
        g = torch.Generator().manual_seed(1)
        self.x = (torch.rand(cfg.batch_size, 3, cfg.size, cfg.size, generator=g) * 2 - 1).to(device)
        self.y = (torch.rand(cfg.batch_size, 3, cfg.size, cfg.size, generator=g) * 2 - 1).to(device)
        for _ in range(warmup):
            train_step(self.models, self.x, self.y)
        sync(device)

    def images_per_s(self, steps: int) -> float:
        """Images/s over ``steps`` consecutive steps."""
        start = time.perf_counter()
        for _ in range(steps):
            losses = train_step(self.models, self.x, self.y)
        float(losses["G"])
        sync(self.device)
        return self.cfg.batch_size * steps / (time.perf_counter() - start)


def measure(cfg: TrainConfig, device: torch.device, paths: list[str], steps: int, warmup: int,
            rounds: int) -> list[dict]:
    """Every path's rate over ``rounds`` rounds of ``steps`` steps, the paths taking turns within a round (in
    a rotated order each round), so that a machine slower for a while slows every path alike.  Per path: the
    median rate over the rounds, and the median over the rounds of its ratio to ``public`` in the same round."""
    timed = {path: Timed(cfg, device, path, warmup) for path in paths}
    for path in paths:  # an untimed round once every path is built: the first steps after the others' are slow
        timed[path].images_per_s(1)
    rates: dict[str, list[float]] = {path: [] for path in paths}
    for r in range(rounds):
        for path in paths[r % len(paths):] + paths[:r % len(paths)]:
            rates[path].append(timed[path].images_per_s(steps))
    out = []
    for path in paths:
        ratios = [a / b for a, b in zip(rates[path], rates["public"])]
        rate = statistics.median(rates[path])
        out.append({"path": path, "images_per_s": rate, "ms_per_step": 1000 * cfg.batch_size / rate,
                    "images_per_s_per_round": rates[path], "ratio_vs_public": statistics.median(ratios),
                    "ratio_per_round": ratios})
    return out


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
    parser.add_argument("--steps", type=int, default=3, help="timed steps per path and round (default 3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, the paths taking turns in each (default 3; 5 with --vs-eager)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1; more with --compile)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256], help="image sides (default 256)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10], help="batch sizes (default 1 10)")
    parser.add_argument("--vs-eager", action="store_true",
                        help="only the comparison behind the bf16 default: batch 1 at 256, paths public, fp32 and bf16")
    parser.add_argument("--compile", action="store_true", help="also measure the bf16 path under torch.compile")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    paths = [p for p in PATHS if p != "compiled" or args.compile]
    if args.vs_eager:
        args.sizes, args.batches, paths = [256], [1], ["public", "fp32", "bf16"]
        args.rounds = max(args.rounds, 5)
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            cfg = TrainConfig(name="l1_cgan", size=size, batch_size=batch).resolved()
            for result in measure(cfg, device, paths, args.steps, args.warmup, args.rounds):
                rows.append({"size": size, "batch": batch, **result})
                print(f"  size {size} batch {batch} {result['path']}: {result['images_per_s']:.3f} images/s",
                      file=sys.stderr, flush=True)
    costs = [fixed_costs(TrainConfig(name="l1_cgan", size=size, batch_size=1).resolved(), device) for size in args.sizes]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"Full D+G step, U-Net + 70x70 PatchGAN, L1+cGAN, on {device.type} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {args.warmup} warm-up step(s) per path and one untimed round, "
          f"then {args.rounds} rounds of "
          f"{args.steps} timed steps per path, the paths taking turns; median over the rounds, and the median of "
          f"the per-round ratios to `public`; "
          f"baseline `public`: eager fp32 NCHW with torch's default Adam, as the public PyTorch code; `p2p-eval train` "
          f"runs `{resolve_precision('auto', device)}` here by default\n")
    print("| size | batch | path | images/s | ms/step | vs public | vs public per round |")
    print("|---:|---:|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['size']} | {r['batch']} | {r['path']} | {r['images_per_s']:.3f} | {r['ms_per_step']:.0f} | "
              f"{r['ratio_vs_public']:.2f}x | {', '.join(f'{x:.2f}' for x in r['ratio_per_round'])} |")
    print("\nFixed costs per run: building G, D and the optimisers; one full checkpoint write (G, D, both Adam states)\n")
    print("| size | build (s) | checkpoint write (s) | checkpoint (MB) |")
    print("|---:|---:|---:|---:|")
    for c in costs:
        print(f"| {c['size']} | {c['build_s']:.2f} | {c['checkpoint_s']:.2f} | {c['checkpoint_mb']:.0f} |")
    if args.json:
        default = resolve_precision("auto", device)
        summary = [{"figure": f"pix2pix D+G step at {r['size']}, batch {r['batch']}, `{r['path']}` path"
                              + (" (`p2p-eval train`'s default here)" if r["path"] == default else ""),
                    "value": r["images_per_s"], "unit": "images/s",
                    "baseline": "public PyTorch code's path (eager fp32, default Adam), same run",
                    "baseline_value": next(b["images_per_s"] for b in rows if b["path"] == "public"
                                           and (b["size"], b["batch"]) == (r["size"], r["batch"])),
                    "ratio": r["ratio_vs_public"], "goal": ">= 1.5x" if r["path"] == default else None}
                   for r in rows if r["path"] in ("fp32", "bf16")]
        args.json.write_text(json.dumps({"device": device.type, "device_name": name, "torch": torch.__version__,
                                         "default_precision": default, "threads": torch.get_num_threads(),
                                         "steps": args.steps, "rounds": args.rounds, "rows": rows,
                                         "fixed_costs": costs,
                                         "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
