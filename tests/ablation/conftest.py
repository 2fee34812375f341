"""A tiny FCN-score segmenter (32x32, one epoch on the synthetic scenes), trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ablation_segmenter(synth_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from p2p_eval.metrics.segmenter import train_segmenter

    return train_segmenter(synth_small, tmp_path_factory.mktemp("ablation_seg") / "seg.pt", epochs=1, size=32,
                           device="cpu", num_workers=0, progress=False)

