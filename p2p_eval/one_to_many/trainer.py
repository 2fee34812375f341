"""Training the one-to-many framework on two unpaired image folders; resumable exactly.

Each step draws an image of each domain (:mod:`p2p_eval.one_to_many.data`) and runs
:func:`p2p_eval.one_to_many.losses.train_step`: both cycles, one Adam step on the encoders and generators, one
on the discriminators.  The learning rate follows ``lr_schedule`` per epoch
(:func:`p2p_eval.train.loop.lr_factor`: ``linear`` is constant for the first half of the epochs, then decays
linearly).  A run lives in one folder::

    RUN/config.toml            the resolved config
    RUN/log.jsonl              one JSON object per ``log_every`` steps: step, epoch, lr, images_per_s, loss terms
    RUN/samples/epoch_NNN.png  after every epoch: each row an input, then its translations under fixed prior codes
    RUN/checkpoints/last.pt    the full state, written atomically (temp file + os.replace)
    RUN/DONE                   written when the run reached its last epoch

A checkpoint (every ``checkpoint_every`` steps, after every epoch, at the end) holds the networks, both
optimisers and schedulers, every RNG state (python, numpy, torch, CUDA, the draw order's generator) and the
position, so ``resume=True`` reaches the same weights and losses as an uninterrupted run (same seed, CPU).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError
from p2p_eval.fsutil import append_line, atomic_torch_save, atomic_write_text, torch_load
from p2p_eval.imageio import from_unit_range, write_png
from p2p_eval.one_to_many.config import RESUMABLE_FIELDS, OneToManyConfig
from p2p_eval.one_to_many.data import UnpairedData
from p2p_eval.one_to_many.losses import train_step
from p2p_eval.one_to_many.models import OneToMany
from p2p_eval.train.checkpoint import capture_rng, restore_rng
from p2p_eval.train.loop import adam, lr_factor

SAMPLE_INPUTS = 4
SAMPLE_CODES = 3


@dataclasses.dataclass
class Training:
    """The state a run carries from step to step."""

    cfg: OneToManyConfig
    model: OneToMany
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LambdaLR
    sched_d: torch.optim.lr_scheduler.LambdaLR
    epoch: int = 0
    offset: int = 0
    step: int = 0

    @classmethod
    def build(cls, cfg: OneToManyConfig, dev: torch.device) -> Training:
        """Fresh networks (seeded with ``cfg.seed``), Adam optimisers and per-epoch LR schedulers."""
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        model = OneToMany(cfg).to(dev)
        opt_g, opt_d = adam(model.generative_parameters(), cfg, dev), adam(model.discriminator_parameters(), cfg, dev)
        factor = lr_factor(cfg.lr_schedule, cfg.epochs)
        return cls(cfg, model, opt_g, opt_d, torch.optim.lr_scheduler.LambdaLR(opt_g, factor),
                   torch.optim.lr_scheduler.LambdaLR(opt_d, factor))

    def save(self, path: Path, order_state: dict[str, Any]) -> None:
        """Write the full state atomically (tensors and primitives only: loads with weights_only=True)."""
        atomic_torch_save({
            "format": 1, "kind": "one-to-many", "model": self.model.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
            "rng": capture_rng(), "order": order_state, "epoch": self.epoch, "offset": self.offset,
            "step": self.step, "config": self.cfg.to_dict()}, path)

    def restore(self, state: dict[str, Any], path: Path) -> None:
        """Load what :meth:`save` wrote to ``path`` (the draw order is restored by the caller)."""
        load_weights(self.model, state, path)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.epoch, self.offset, self.step = state["epoch"], state["offset"], state["step"]
        restore_rng(state["rng"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A one-to-many checkpoint, loaded safely; anything else is a one-line UserError."""
    state = torch_load(path, "one-to-many checkpoint", "give a run folder written by p2p-eval one-to-many train")
    if not isinstance(state, dict) or state.get("kind") != "one-to-many":
        raise UserError(f"{path} is not a one-to-many checkpoint; give a run folder written by "
                        "p2p-eval one-to-many train")
    return state


def load_weights(model: OneToMany, state: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's network weights; weights of other networks (another layer plan) are a UserError."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise UserError(f"{path} holds networks of another layout than these ({first[:120]}...); train the run again "
                        "with this version") from None


def _check_resumable(run: Path, state: dict[str, Any], cfg: OneToManyConfig) -> None:
    saved, current = state["config"], cfg.to_dict()
    diffs = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(saved) | set(current))
             if k not in RESUMABLE_FIELDS and saved.get(k) != current.get(k)]
    if diffs:
        raise UserError(f"cannot resume {run} with a different config ({'; '.join(diffs)}); use the variant and "
                        "flags the run was started with, or choose another --out")


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log lines up to ``step`` (the checkpoint's), dropping a line cut short by a kill."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _start(cfg: OneToManyConfig, run: Path, data: UnpairedData, dev: torch.device, resume: bool) -> Training:
    """A fresh run (refusing to overwrite one) or the one in ``run`` continued from its checkpoint."""
    ckpt = run / "checkpoints" / "last.pt"
    training = Training.build(cfg, dev)
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        _check_resumable(run, state, cfg)
        training.restore(state, ckpt)
        data.order.load_state_dict(state["order"])
        _truncate_log(run / "log.jsonl", training.step)
        return training
    if not resume and (ckpt.exists() or (run / "DONE").exists()):
        raise UserError(f"{run} already holds a run; pass --resume to continue it or choose another --out")
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "log.jsonl").unlink(missing_ok=True)
    atomic_write_text(run / "config.toml", cfg.to_toml())
    return training


def write_samples(path: Path, model: OneToMany, data: UnpairedData, cfg: OneToManyConfig) -> None:
    """Rows ``input | output under code 1 | ... | code K`` for the first images of X (to Y) and of Y (to X).

    The codes come from a generator seeded with ``cfg.seed``, so every epoch's grid uses the same codes; the
    global RNGs are left as they were."""
    dev = next(model.parameters()).device
    codes = torch.randn(SAMPLE_CODES, cfg.code_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(dev)
    rows = []
    with torch.no_grad():
        for source, folder in (("x", data.x), ("y", data.y)):
            for i in range(min(SAMPLE_INPUTS, len(folder))):
                image = folder.image(i).unsqueeze(0).to(dev)
                outs = model.translate(image.expand(SAMPLE_CODES, -1, -1, -1), source, codes)
                rows.append(torch.cat([image[0], *outs], dim=2).cpu())
    write_png(path, from_unit_range(torch.cat(rows, dim=1)))


def train(cfg: OneToManyConfig, domain_x: str | Path, domain_y: str | Path, out_dir: str | Path,
          device: str = "auto", resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg`` on the unpaired folders ``domain_x`` and ``domain_y`` into the run folder ``out_dir``."""
    run, dev = Path(out_dir), resolve_device(device)
    data = UnpairedData(domain_x, domain_y, cfg.size, cfg.batch_size, cfg.seed, cfg.mirror)
    training = _start(cfg, run, data, dev, resume)
    total = cfg.epochs * data.steps_per_epoch
    limit = min(total, cfg.max_steps or total)
    with tqdm(total=limit, initial=min(training.step, limit), desc=f"one-to-many {cfg.name}", unit="step",
              disable=None if progress else True) as bar:
        while training.step < limit:
            _run_epoch(training, data, run, limit, bar)
    if training.step >= total:
        atomic_write_text(run / "DONE", f"step {training.step}\n")
    return run


def _run_epoch(training: Training, data: UnpairedData, run: Path, limit: int, bar: tqdm) -> None:
    """Steps from the current position to the end of the epoch (or ``limit``), with logs and checkpoints."""
    cfg, dev, ckpt = training.cfg, next(training.model.parameters()).device, run / "checkpoints" / "last.pt"
    data.order.start_epoch()
    window: dict[str, float] = {}
    count, tick = 0, time.perf_counter()
    for s in range(training.offset, data.steps_per_epoch):
        if training.step >= limit:
            break
        x, y = data.batch(s)
        values = train_step(training.model, training.opt_g, training.opt_d, x.to(dev), y.to(dev), cfg)
        if not all(np.isfinite(v) for v in values.values()):
            raise UserError(f"a loss became NaN or inf at step {training.step + 1} ({values}); the last checkpoint "
                            f"{ckpt} is kept: lower lr or check the images")
        training.step, training.offset = training.step + 1, s + 1
        window = {k: window.get(k, 0.0) + v for k, v in values.items()}
        count += 1
        bar.update(1)
        if training.step % cfg.log_every == 0 or training.step == limit:
            now = time.perf_counter()
            record = {"step": training.step, "epoch": training.epoch + 1, "lr": training.opt_g.param_groups[0]["lr"],
                      "images_per_s": count * cfg.batch_size / max(now - tick, 1e-9),
                      **{k: v / count for k, v in window.items()}}
            append_line(run / "log.jsonl", json.dumps(record))
            bar.set_postfix(total=f"{record['total']:.3g}", d=f"{record['d']:.3g}")
            window, count, tick = {}, 0, now
        if training.step % cfg.checkpoint_every == 0 and training.offset < data.steps_per_epoch:
            training.save(ckpt, data.order.state_dict())
    if training.offset >= data.steps_per_epoch:
        training.epoch, training.offset = training.epoch + 1, 0
        training.sched_g.step()
        training.sched_d.step()
        write_samples(run / "samples" / f"epoch_{training.epoch:03d}.png", training.model, data, cfg)
        training.save(ckpt, {"epoch_state": data.order.generator.get_state()})
    else:
        training.save(ckpt, data.order.state_dict())
