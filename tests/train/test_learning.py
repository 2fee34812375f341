"""A real learning test: L1+cGAN on the synthetic street scenes (64x64) for a few hundred steps must beat
the best constant prediction a model could learn without looking at its input (the mean training photo),
in fp32 and under bf16 autocast from the same seed (bf16 must not cost quality).

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

STEPS = 300  # measured: val L1 30.24 (fp32) and 30.28 (bf16) vs mean-photo 34.54 (0-255), ~10 s per run


def photos(folder: Path) -> dict[str, np.ndarray]:
    """The photo (A, left) halves of the AB files in ``folder`` as float arrays in [0, 255]."""
    out = {}
    for path in sorted(folder.glob("*.png")):
        ab = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        out[path.stem] = ab[:, : ab.shape[1] // 2]
    return out


def val_l1(tmp_path: Path, data: Path, amp: bool) -> float:
    """Train the reduced-width L1+cGAN (fp32 or bf16 autocast, seed 0), translate val, return its L1 (0-255)."""
    # the paper's L1+cGAN (U-Net, 70x70 PatchGAN, lambda 100, jitter, dropout) at reduced width for CPU time
    cfg = TrainConfig(name="l1_cgan", size=64, ngf=16, ndf=16, epochs=1000, max_steps=STEPS, seed=0,
                      log_every=100).resolved()
    name = "bf16" if amp else "fp32"
    run = train(cfg, data, tmp_path / name, device="cpu", progress=False, precision=name)
    translate_run(run, data, tmp_path / f"fake_{name}", device="cpu", progress=False)
    val_photos = photos(data / "val")
    fakes = {n: np.asarray(Image.open(tmp_path / f"fake_{name}" / f"{n}.png"), dtype=np.float64) for n in val_photos}
    return float(np.mean([np.abs(fakes[n] - p).mean() for n, p in val_photos.items()]))


@pytest.mark.slow
def test_l1_cgan_beats_mean_photo_on_synthetic_val_in_fp32_and_bf16(tmp_path: Path) -> None:
    """fp32 and bf16 autocast (``--amp``) from the same seed both learn, and bf16 is not worse beyond noise."""
    data = tmp_path / "synth"
    generate_dataset(data, count=60, size=64, seed=0, val_fraction=0.2)
    mean_photo = np.mean(list(photos(data / "train").values()), axis=0)
    baseline = np.mean([np.abs(mean_photo - p).mean() for p in photos(data / "val").values()])
    fp32, bf16 = val_l1(tmp_path, data, amp=False), val_l1(tmp_path, data, amp=True)
    assert fp32 < 0.95 * baseline, f"fp32 val L1 {fp32:.2f} vs mean-photo L1 {baseline:.2f} (0-255 scale)"
    assert bf16 < 0.95 * baseline, f"bf16 val L1 {bf16:.2f} vs mean-photo L1 {baseline:.2f} (0-255 scale)"
    assert bf16 < 1.05 * fp32, f"bf16 val L1 {bf16:.2f} vs fp32 {fp32:.2f}: more than 5% worse"
