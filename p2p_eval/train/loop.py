"""The pieces of the pix2pix training loop: resumable data order, LR schedule, one D+G step.

Data order and jitter are reproducible from one generator: at the start of every epoch
:class:`EpochSampler` draws the permutation of the training set and one seed per item from its own
``torch.Generator``; :class:`SeededItems` loads item ``i`` with the global RNGs temporarily seeded
with its seed, so the random crop / mirror of an item does not depend on worker processes or on where
a run was resumed.  A checkpoint stores the generator's state at the start of the epoch and the
number of batches already done, which replays the rest of the epoch exactly.

:func:`train_step` is one iteration of the paper (section 3.3 / the public code's ``optimize_parameters``):
G(x), one Adam step on D with the halved D loss, then one Adam step on G with the non-saturating
GAN loss (if any) plus the L1 (and reconstruction) terms against the updated D.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

import p2p_eval.train.objectives as objectives


class EpochSampler(Sampler):
    """Yields ``(index, item_seed)`` for one epoch; the epoch's order is drawn by :meth:`start_epoch`."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_state = self.generator.get_state()
        self.keys: list[tuple[int, int]] = []

    def start_epoch(self, offset: int = 0) -> None:
        """Draw this epoch's order and item seeds; skip the first ``offset`` items (resume)."""
        self.epoch_state = self.generator.get_state()
        order = torch.randperm(self.size, generator=self.generator).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=self.generator).tolist()
        self.keys = list(zip(order, seeds))[offset:]

    def state_dict(self) -> dict[str, Any]:
        """The generator state at the start of the current epoch."""
        return {"epoch_state": self.epoch_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rewind to the start of the saved epoch; call :meth:`start_epoch` with the offset next."""
        self.generator.set_state(state["epoch_state"])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class SeededItems(Dataset):
    """Wraps a dataset of dicts: item ``(i, seed)`` is ``base[i]`` loaded under RNGs seeded with ``seed``.

    The torch CPU, numpy and python RNGs are restored afterwards, so loading never disturbs the
    training randomness (dropout) that follows.
    """

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            try:
                item = self.base[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        return {"input": item["input"], "target": item["target"], "index": index}


def lr_factor(schedule: str, epochs: int) -> Callable[[int], float]:
    """Multiplier of the base LR after ``e`` finished epochs (a ``LambdaLR`` lambda, stepped per epoch).

    ``constant``: 1 (the original Torch code, which produced the paper's tables). ``linear``: the public
    PyTorch code's ``linear`` policy with ``n_epochs = epochs - epochs // 2`` constant epochs and
    ``n_epochs_decay = epochs // 2``: ``1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1)``.
    """
    if schedule == "constant":
        return lambda e: 1.0
    if schedule == "linear":
        n_decay = epochs // 2
        n_const = epochs - n_decay
        return lambda e: 1.0 - max(0, e + 1 - n_const) / float(n_decay + 1)
    raise ValueError(f"unknown lr_schedule {schedule!r}; valid: constant, linear")


@dataclass
class StepModels:
    """What one training step touches."""

    generator: nn.Module
    discriminator: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    config: Any
    amp: bool = False
    channels_last: bool = False


def adam(params: Any, cfg: Any, device: torch.device) -> torch.optim.Adam:
    """Adam with the config's ``lr`` and betas (paper appendix 6.2: 0.0002, (0.5, 0.999)).

    On CPU and CUDA it is torch's fused kernel: the same update rule (Kingma & Ba 2015, torch's ``Adam``
    with ``eps=1e-8``) in one pass over the parameters and their moments instead of a chain of per-tensor
    ops; ``benchmarks/perf/train_step.py`` measures the gain and ``tests/train/test_trainer.py`` checks it
    matches the per-tensor loop within float rounding.
    """
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)


def autocast(device: torch.device, enabled: bool) -> Any:
    """bf16 autocast on ``device`` when enabled (no loss scaling needed for bf16)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def train_step(m: StepModels, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """One D update then one G update on the batch ``(x, y)``; returns the detached loss terms."""
    cfg = m.config
    if m.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        y = y.contiguous(memory_format=torch.channels_last)
    with autocast(x.device, m.amp):
        fake = m.generator(x)
    losses: dict[str, torch.Tensor] = {}
    if m.discriminator is not None and m.opt_d is not None:
        m.discriminator.requires_grad_(True)
        m.opt_d.zero_grad(set_to_none=True)
        with autocast(x.device, m.amp):
            loss_d, parts_d = objectives.discriminator_loss(cfg, m.discriminator, x, y, fake.detach())
        loss_d.backward()
        m.opt_d.step()
        m.discriminator.requires_grad_(False)
        losses.update(parts_d)
    m.opt_g.zero_grad(set_to_none=True)
    with autocast(x.device, m.amp):
        loss_g, parts_g = objectives.generator_loss(cfg, m.generator, m.discriminator, x, y, fake)
    loss_g.backward()
    m.opt_g.step()
    losses.update(parts_g)
    return {k: v.detach().float() for k, v in losses.items()}
