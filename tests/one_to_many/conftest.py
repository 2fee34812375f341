"""Tiny unpaired folders and a tiny variant file for the one-to-many tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p2p_eval.imageio import write_png


def random_images(folder: Path, count: int, seed: int, shape: tuple[int, int] = (64, 64)) -> Path:
    g = torch.Generator().manual_seed(seed)
    for i in range(count):
        write_png(folder / f"{i}.png", torch.randint(0, 256, (3, *shape), generator=g, dtype=torch.uint8))
    return folder


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """X: 3 images (one not square, resized on reading), Y: 2 images."""
    x = random_images(tmp_path / "x", 2, 0)
    write_png(x / "9.png", torch.randint(0, 256, (3, 72, 64), generator=torch.Generator().manual_seed(1),
                                         dtype=torch.uint8))
    return x, random_images(tmp_path / "y", 2, 2)


@pytest.fixture
def variant(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\nngf = 4\nndf = 4\nsize = 64\nepochs = 2\nlog_every = 1\ncheckpoint_every = 2\n'
                    'mmd_prior_samples = 8\nbatch_size = 1\nmmd_estimator = "biased"\n')
    return path
