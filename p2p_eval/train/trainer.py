"""The pix2pix trainer (Isola et al. 2017, section 3.3 and appendix 6): resumable, deterministic on CPU.

Adam (``lr``, betas ``(beta1, beta2)``; torch's fused kernel on CPU and CUDA) for G and D; every iteration one D step then one G step
(:func:`p2p_eval.train.loop.train_step`); the LR is constant (the original Torch code, which produced
the paper's tables) or decays linearly over the second half of the epochs (the public PyTorch code),
as the variant file says.  A run lives in one folder::

    RUN/config.toml          the resolved config
    RUN/log.jsonl            one JSON object per ``log_every`` steps: step, epoch, lr, images_per_s, losses
    RUN/samples/epoch_NNN.png  input | output | target for the first val images, after every epoch
    RUN/checkpoints/last.pt  the full state (see :mod:`p2p_eval.train.checkpoint`), written atomically
    RUN/DONE                 written when the run reached its last step

A checkpoint is written after every epoch, every ``checkpoint_every`` steps if given, at least every
``checkpoint_minutes`` of wall time, and at the end.  ``resume=True`` continues from it and reaches
exactly the weights an uninterrupted run reaches (same seed, CPU); resuming a finished run does
nothing, resuming with a different config is a UserError.  A NaN / inf loss stops the run with a
UserError naming the step; the last good checkpoint is kept.  On CUDA the step runs channels_last; it
runs under bf16 autocast where bf16 is native (``precision="auto"``) or when asked; nothing here assumes CUDA.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from p2p_eval.config import TrainConfig
from p2p_eval.data.aligned import config_dataset
from p2p_eval.data.lab import rgb_of
from p2p_eval.device import resolve_device, resolve_precision
from p2p_eval.errors import UserError, require_dir
from p2p_eval.fsutil import append_line, atomic_write_text
from p2p_eval.imageio import from_unit_range, write_png
from p2p_eval.models import build_discriminator, build_generator
from p2p_eval.train.checkpoint import Position, config_differences, load_checkpoint, restore_rng, save_checkpoint
from p2p_eval.train.inference import generation_mode
from p2p_eval.train.loop import EpochSampler, SeededItems, StepModels, adam, autocast, lr_factor, train_step

SAMPLE_COUNT = 4


def train(cfg: TrainConfig, data_dir: str | Path, out_dir: str | Path, device: str = "auto", resume: bool = False,
          progress: bool = True, precision: str = "auto", num_workers: int | None = None,
          checkpoint_every: int | None = None, checkpoint_minutes: float = 10.0) -> Path:
    """Train ``cfg`` on ``data_dir/train`` into the run folder ``out_dir``; return the run folder.

    ``precision``: ``fp32``, ``bf16`` (autocast, fp32 weights) or ``auto`` (bf16 where it is native, see
    :func:`p2p_eval.device.resolve_precision`); a resumed run keeps the precision it started with (``auto``)
    and refuses another one. ``num_workers`` defaults to 0 on CPU and 4 on CUDA (results do not depend on it).
    """
    data_dir = require_dir(data_dir, "data folder")
    cfg = cfg.resolved()
    run = Path(out_dir)
    ckpt_path = run / "checkpoints" / "last.pt"
    dev = resolve_device(device)
    state = _resume_state(run, ckpt_path, cfg) if resume else _check_fresh(run, ckpt_path)
    precision = _run_precision(precision, dev, state, run)
    if state is not None:
        cfg_dict = dict(state["config"], max_steps=cfg.max_steps, log_every=cfg.log_every)
        cfg = TrainConfig.from_dict(cfg_dict, source=str(ckpt_path))

    dataset = config_dataset(data_dir, "train", cfg, training=True)
    steps_per_epoch = math.ceil(len(dataset) / cfg.batch_size)
    last_step = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    if state is not None and state["step"] >= last_step:
        (run / "DONE").write_text(f"step {state['step']}\n")
        return run
    (run / "DONE").unlink(missing_ok=True)

    training = _Training.build(cfg, dev, precision, len(dataset))
    if state is not None:
        training.restore(state)
    _truncate_log(run / "log.jsonl", training.position.step)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "config.toml", cfg.to_toml())
    for stale in ckpt_path.parent.glob(f".{ckpt_path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    plan = _Plan(run=run, data_dir=data_dir, last_step=last_step, steps_per_epoch=steps_per_epoch,
                 workers=num_workers if num_workers is not None else (4 if dev.type == "cuda" else 0),
                 checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
                 samples=_sample_batch(data_dir, cfg))
    bar = tqdm(total=last_step, initial=training.position.step, disable=None if progress else True, desc=f"train {cfg.name}",
               unit="step")
    try:
        _fit(training, dataset, plan, bar)
    finally:
        bar.close()
    (run / "DONE").write_text(f"step {training.position.step}\n")
    return run


@dataclass
class _Training:
    """The models, optimisers, schedulers, data order and position of a run in progress."""

    models: StepModels
    sched_g: torch.optim.lr_scheduler.LambdaLR
    sched_d: torch.optim.lr_scheduler.LambdaLR | None
    sampler: EpochSampler
    precision: str
    device: torch.device
    position: Position = Position()

    @classmethod
    def build(cls, cfg: TrainConfig, dev: torch.device, precision: str, items: int) -> _Training:
        """Fresh models and optimisers from ``cfg.seed`` (every RNG seeded first), for ``items`` training pairs."""
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        gen = build_generator(cfg).to(dev)
        disc = build_discriminator(cfg)
        disc = disc.to(dev) if disc is not None else None
        channels_last = dev.type == "cuda"
        if channels_last:
            gen.to(memory_format=torch.channels_last)
            if disc is not None:
                disc.to(memory_format=torch.channels_last)
        opt_g = adam(gen.parameters(), cfg, dev)
        opt_d = adam(disc.parameters(), cfg, dev) if disc is not None else None
        factor = lr_factor(cfg.lr_schedule, cfg.epochs)
        sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, factor)
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, factor) if opt_d is not None else None
        models = StepModels(gen, disc, opt_g, opt_d, cfg, amp=precision == "bf16", channels_last=channels_last)
        return cls(models, sched_g, sched_d, EpochSampler(items, cfg.seed), precision, dev)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state (see :func:`~p2p_eval.train.checkpoint.save_checkpoint`)."""
        m = self.models
        m.generator.load_state_dict(state["generator"])
        m.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if m.discriminator is not None and m.opt_d is not None and self.sched_d is not None:
            m.discriminator.load_state_dict(state["discriminator"])
            m.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        self.sampler.load_state_dict(state["sampler"])
        restore_rng(state["rng"])
        self.position = Position(state["epoch"], state["epoch_offset"], state["step"])

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.models, self.sched_g, self.sched_d, self.sampler.state_dict(), self.position,
                        self.precision)


@dataclass(frozen=True)
class _Plan:
    """Where a run writes, how long it goes and when it saves."""

    run: Path
    data_dir: Path
    last_step: int
    steps_per_epoch: int
    workers: int
    checkpoint_every: int | None
    checkpoint_minutes: float
    samples: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def checkpoint(self) -> Path:
        return self.run / "checkpoints" / "last.pt"


def _fit(training: _Training, dataset: Dataset, plan: _Plan, bar: tqdm) -> None:
    """Train until ``plan.last_step``: one D and one G step per batch, a log line every ``log_every`` steps, samples
    and a scheduler step after every epoch, a checkpoint after every epoch and on the plan's schedule."""
    cfg, dev = training.models.config, training.device
    window = _LogWindow()
    saved_at = time.monotonic()
    while training.position.step < plan.last_step:
        training.sampler.start_epoch(training.position.epoch_offset * cfg.batch_size)
        loader = DataLoader(SeededItems(dataset), batch_size=cfg.batch_size, sampler=training.sampler,
                            num_workers=plan.workers, pin_memory=dev.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed))
        for batch in loader:
            x = batch["input"].to(dev, non_blocking=True)
            y = batch["target"].to(dev, non_blocking=True)
            losses = train_step(training.models, x, y)
            values = dict(zip(losses, torch.stack(list(losses.values())).tolist()))
            pos = training.position
            training.position = pos = dataclasses.replace(pos, step=pos.step + 1, epoch_offset=pos.epoch_offset + 1)
            _check_finite(values, pos, plan, cfg.name)
            window.add(values, x.shape[0])
            bar.update(1)
            if pos.step % cfg.log_every == 0 or pos.step == plan.last_step:
                window.flush(plan.run / "log.jsonl", pos, training, bar)
            if pos.step >= plan.last_step:
                break
            if ((plan.checkpoint_every and pos.step % plan.checkpoint_every == 0)
                    or time.monotonic() - saved_at > 60 * plan.checkpoint_minutes):
                training.save(plan.checkpoint)
                saved_at = time.monotonic()
        pos = training.position
        if pos.epoch_offset >= plan.steps_per_epoch:
            _write_samples(plan.run / "samples" / f"epoch_{pos.epoch + 1:03d}.png", training.models.generator,
                           plan.samples, cfg, dev, training.models.amp)
            training.sched_g.step()
            if training.sched_d is not None:
                training.sched_d.step()
            training.position = Position(pos.epoch + 1, 0, pos.step)
            training.sampler.epoch_state = training.sampler.generator.get_state()
        training.save(plan.checkpoint)
        saved_at = time.monotonic()


def _check_finite(values: dict[str, float], pos: Position, plan: _Plan, name: str) -> None:
    """UserError naming the step when a loss is NaN or infinite (the last good checkpoint is kept)."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        ckpt_path = plan.checkpoint
        kept = f"the last good checkpoint {ckpt_path} is kept" if ckpt_path.exists() else "no checkpoint was written yet"
        raise UserError(f"training {name} stopped: loss {', '.join(f'{k} = {v}' for k, v in bad.items())} "
                        f"at step {pos.step} (epoch {pos.epoch + 1}); {kept}; try a lower lr or check the data in "
                        f"{plan.data_dir}")


class _LogWindow:
    """Loss sums and image counts since the last log line."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count, self.images, self.tick = 0, 0, time.perf_counter()

    def add(self, values: dict[str, float], images: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count, self.images = self.count + 1, self.images + images

    def flush(self, path: Path, pos: Position, training: _Training, bar: tqdm) -> None:
        """Append the window's means to the log, show them on the bar and start a new window."""
        now = time.perf_counter()
        record = {"step": pos.step, "epoch": pos.epoch + 1, "lr": training.models.opt_g.param_groups[0]["lr"],
                  "precision": training.precision, "images_per_s": self.images / max(now - self.tick, 1e-9),
                  **{k: s / self.count for k, s in self.sums.items()}}
        append_line(path, json.dumps(record))
        bar.set_postfix({k: f"{s / self.count:.3g}" for k, s in self.sums.items()})
        self.sums, self.count, self.images, self.tick = {}, 0, 0, now


def _check_fresh(run: Path, ckpt_path: Path) -> None:
    """A new run must not overwrite an existing one."""
    if ckpt_path.exists() or (run / "DONE").exists():
        raise UserError(f"{run} already holds a run; pass --resume to continue it or choose another --out")
    return None


def _run_precision(asked: str, dev: torch.device, state: dict[str, Any] | None, run: Path) -> str:
    """The precision the steps run in: a resumed run's own (checkpoints before this field: fp32), else ``asked``."""
    resolved = resolve_precision(asked, dev)  # also rejects an unknown name, resumed or not
    if state is None:
        return resolved
    saved = state.get("precision", "fp32")
    if asked != "auto" and resolved != saved:
        raise UserError(f"{run} was trained in {saved}; resume it with --precision {saved} (or auto), or choose "
                        "another --out")
    return saved


def _resume_state(run: Path, ckpt_path: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint to resume from (None when the run never saved one); refuses a changed config."""
    if not ckpt_path.exists():
        return None
    state = load_checkpoint(ckpt_path)
    saved = {**dataclasses.asdict(TrainConfig()), **state["config"]}  # settings newer than the run: their defaults
    diffs = config_differences(saved, dataclasses.asdict(cfg))
    if diffs:
        raise UserError(f"cannot resume {run} with a different config ({'; '.join(diffs)}); use the generator file "
                        "and flags the run was started with, or choose another --out")
    return state


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run (re)starts from, and a line cut short by a kill."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record["step"] <= step:
            keep.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _sample_batch(data_dir: Path, cfg: TrainConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first :data:`SAMPLE_COUNT` val pairs (train pairs when there is no val split), unjittered."""
    split = "val" if (data_dir / "val").is_dir() else "train"
    dataset = config_dataset(data_dir, split, cfg)
    return [(dataset[i]["input"], dataset[i]["target"]) for i in range(min(SAMPLE_COUNT, len(dataset)))]


def _write_samples(path: Path, gen: torch.nn.Module, samples: list[tuple[torch.Tensor, torch.Tensor]],
                   cfg: TrainConfig, dev: torch.device, amp: bool) -> None:
    """One row input | output | target per sample, under the run's test-time protocol; RNGs untouched."""
    if not samples:
        return
    rows = []
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), generation_mode(gen, eval_mode=not cfg.test_dropout):
        for x, y in samples:
            with autocast(dev, amp):
                fake = gen(x.unsqueeze(0).to(dev)).float()[0].cpu()
            if cfg.color_space == "lab":
                rows.append(torch.cat([rgb_of(x), rgb_of(x, fake), rgb_of(x, y)], dim=2))
            else:
                rows.append(torch.cat([_rgb(x), _rgb(fake), _rgb(y)], dim=2))
    write_png(path, from_unit_range(torch.cat(rows, dim=1)))


def _rgb(image: torch.Tensor) -> torch.Tensor:
    """A (C, H, W) image with 1 or 3 channels as 3 channels."""
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
