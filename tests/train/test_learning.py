"""A real learning test: L1+cGAN on the synthetic street scenes (64x64) for a few hundred steps must beat
the best constant prediction a model could learn without looking at its input (the mean training photo).

Both L1 errors are computed here from the PNG files with numpy (outputs of ``translate_run`` vs the
photo halves of the val AB files), independently of the trainer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2p_eval.config import TrainConfig
from p2p_eval.data.synth import generate_dataset
from p2p_eval.train.trainer import train
from p2p_eval.translate import translate_run

STEPS = 300  # measured: val L1 27.7 vs mean-photo 31.8 (0-255), ~140 s on a loaded 2-core CPU


def photos(folder: Path) -> dict[str, np.ndarray]:
    """The photo (A, left) halves of the AB files in ``folder`` as float arrays in [0, 255]."""
    out = {}
    for path in sorted(folder.glob("*.png")):
        ab = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        out[path.stem] = ab[:, : ab.shape[1] // 2]
    return out


@pytest.mark.slow
def test_l1_cgan_beats_mean_photo_on_synthetic_val(tmp_path: Path) -> None:
    data = tmp_path / "synth"
    generate_dataset(data, count=60, size=64, seed=0, val_fraction=0.2)
    # the paper's L1+cGAN (U-Net, 70x70 PatchGAN, lambda 100, jitter, dropout) at reduced width for CPU time
    cfg = TrainConfig(name="l1_cgan", size=64, ngf=16, ndf=16, epochs=1000, max_steps=STEPS, seed=0,
                      log_every=100).resolved()
    run = train(cfg, data, tmp_path / "run", device="cpu", progress=False)
    translate_run(run, data, tmp_path / "fake", device="cpu", progress=False)

    train_photos = photos(data / "train")
    val_photos = photos(data / "val")
    mean_photo = np.mean(list(train_photos.values()), axis=0)
    baseline = np.mean([np.abs(mean_photo - p).mean() for p in val_photos.values()])
    fakes = {name: np.asarray(Image.open(tmp_path / "fake" / f"{name}.png"), dtype=np.float64) for name in val_photos}
    model = np.mean([np.abs(fakes[name] - p).mean() for name, p in val_photos.items()])
    assert model < 0.95 * baseline, f"val L1 {model:.2f} vs mean-photo L1 {baseline:.2f} (0-255 scale)"
