"""Shared helpers of the trainer tests: tiny random-noise AB data sets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from p2p_eval.imageio import write_png


def write_noise_ab(root: Path, split: str, count: int, side: int, seed: int) -> None:
    """Random-noise AB pairs (side x 2*side) as PNG; enough to exercise the training mechanics."""
    g = torch.Generator().manual_seed(seed)
    for i in range(1, count + 1):
        write_png(root / split / f"{i}.png", torch.randint(0, 256, (3, side, 2 * side), generator=g, dtype=torch.uint8))


@pytest.fixture(scope="session")
def noise_ab() -> Callable[[Path, str, int, int, int], None]:
    """The writer of random-noise AB pairs, as a fixture."""
    return write_noise_ab
