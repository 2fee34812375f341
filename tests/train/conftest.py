"""Shared helpers of the trainer tests: tiny random-noise AB data sets and the tiny config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from p2p_eval.config import TrainConfig
from p2p_eval.imageio import write_png

#: The tiny run of the trainer tests: U-Net 32 (5 downs), 8 filters, batch 2, 2 epochs, a log record every 2 steps.
TINY = dict(name="tiny", ngf=8, ndf=8, size=32, batch_size=2, epochs=2, seed=0, log_every=2)


def write_noise_ab(root: Path, split: str, count: int, side: int, seed: int) -> None:
    """Random-noise AB pairs (side x 2*side) as PNG; enough to exercise the training mechanics."""
    g = torch.Generator().manual_seed(seed)
    for i in range(1, count + 1):
        write_png(root / split / f"{i}.png", torch.randint(0, 256, (3, side, 2 * side), generator=g, dtype=torch.uint8))


@pytest.fixture(scope="session")
def noise_ab() -> Callable[[Path, str, int, int, int], None]:
    """The writer of random-noise AB pairs, as a fixture."""
    return write_noise_ab


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 train + 3 val noise AB pairs with 32 x 32 halves: 3 steps per epoch at batch 2."""
    root = tmp_path_factory.mktemp("ab32")
    write_noise_ab(root, "train", 6, 32, seed=1)
    write_noise_ab(root, "val", 3, 32, seed=2)
    return root


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., TrainConfig]:
    """Factory of the resolved tiny config (:data:`TINY`); keyword arguments change its fields."""

    def make(**changes: object) -> TrainConfig:
        return TrainConfig(**{**TINY, **changes}).resolved()

    return make
