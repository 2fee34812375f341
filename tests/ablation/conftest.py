"""Tiny FCN-score segmenters (32x32, whole frames, one epoch on the synthetic scenes), trained once per session:
the one every ablation test scores with, and a second (another seed) for re-scoring; the training overrides of
the tests that check the pipeline rather than the paper's widths."""

from __future__ import annotations

from pathlib import Path

import pytest


def _segmenter(data: Path, out: Path, seed: int) -> Path:
    from p2p_eval.segmentation.train import train_segmenter

    return train_segmenter(data, out, epochs=1, size=32, crop=None, batch_size=8, seed=seed, device="cpu",
                           cache_dir=None, amp=False, num_workers=0, progress=False)


@pytest.fixture(scope="session")
def ablation_segmenter(synth_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _segmenter(synth_small, tmp_path_factory.mktemp("ablation_seg") / "seg.pt", seed=0)


@pytest.fixture(scope="session")
def second_segmenter(synth_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _segmenter(synth_small, tmp_path_factory.mktemp("ablation_seg2") / "seg2.pt", seed=1)


@pytest.fixture(scope="session")
def narrow_step() -> dict[str, int]:
    """One training step per row at an eighth of the paper's widths (ngf = ndf = 8): what these tests check is the
    pipeline, and a 64-wide U-Net's checkpoint (weights + Adam states) is ~200 MB even at 32 px."""
    return {"max_steps": 1, "ngf": 8, "ndf": 8}
