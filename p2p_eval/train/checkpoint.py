"""Training checkpoints: everything a killed run needs to continue bit-for-bit.

A checkpoint is one ``torch.save`` dict of tensors and primitives only, so it loads with
``torch.load(weights_only=True)`` (no pickled code).  It holds G, D, both optimisers, both LR
schedulers, the RNG states (torch CPU, CUDA if any, numpy, python ``random``, the data-order
sampler's generator), the position (epoch, batches done in that epoch, global step) and the
resolved config and the precision (fp32 / bf16).  It is written with :func:`p2p_eval.fsutil.atomic_torch_save` (temp file +
``os.replace``), so a process killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from p2p_eval.errors import UserError
from p2p_eval.fsutil import atomic_torch_save, torch_load
from p2p_eval.train.loop import StepModels

#: Config fields that may differ between a run and its resumption: they change neither the
#: trajectory nor the result of a step (a run stopped by ``max_steps`` is continued by raising it).
RESUMABLE_FIELDS = frozenset({"max_steps", "log_every"})


def capture_rng() -> dict[str, Any]:
    """The global RNG states as tensors / lists (python ``random``, numpy, torch CPU, CUDA)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"], nps["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class Position:
    """Where a run is: finished epochs, steps into the current epoch, steps in all."""

    epoch: int = 0
    epoch_offset: int = 0
    step: int = 0


def save_checkpoint(path: Path, models: StepModels, sched_g: torch.optim.lr_scheduler.LRScheduler,
                    sched_d: torch.optim.lr_scheduler.LRScheduler | None, sampler_state: dict[str, Any],
                    position: Position, precision: str = "fp32") -> Path:
    """Write the full training state of ``models`` (with their config) atomically to ``path``
    (``precision``: what the steps ran in, kept by resume)."""
    payload = {
        "format": 1,
        "generator": models.generator.state_dict(),
        "discriminator": models.discriminator.state_dict() if models.discriminator is not None else None,
        "opt_g": models.opt_g.state_dict(),
        "opt_d": models.opt_d.state_dict() if models.opt_d is not None else None,
        "sched_g": sched_g.state_dict(),
        "sched_d": sched_d.state_dict() if sched_d is not None else None,
        "rng": capture_rng(),
        "sampler": sampler_state,
        "epoch": position.epoch,
        "epoch_offset": position.epoch_offset,
        "step": position.step,
        "config": dataclasses.asdict(models.config),
        "precision": precision,
    }
    return atomic_torch_save(payload, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); a damaged file is a UserError."""
    state = torch_load(path, "p2p-eval training checkpoint", "give the checkpoint p2p-eval train wrote, or train "
                       "the run first (a damaged checkpoint: delete it and restart the run)")
    if not isinstance(state, dict) or "generator" not in state:
        raise UserError(f"{path} is not a p2p-eval training checkpoint; give the run folder p2p-eval train wrote")
    return state


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``field: saved -> current`` for every field (outside :data:`RESUMABLE_FIELDS`) that differs."""
    keys = sorted((set(saved) | set(current)) - RESUMABLE_FIELDS)
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]
