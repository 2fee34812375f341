"""The paper's other tasks from the command line, smoke-sized: colorization (L -> ab, RGB outputs that keep the
input's lightness; the L2-regression row's squared error), maps <-> aerial photos (trained small, translated at
512 x 512 as the paper's Figure 8) and edges -> shoes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from p2p_eval.cli import main
from p2p_eval.config import load_generator
from p2p_eval.imageio import write_png
from p2p_eval.models import build_generator
from p2p_eval.train.objectives import generator_loss


def smooth_photos(folder: Path, count: int, side: int, seed: int) -> None:
    """Colour photos with some structure (smooth gradients), so that Lab round trips stay inside sRGB."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        low = torch.rand(3, 4, 4, generator=g)
        photo = torch.nn.functional.interpolate(low[None], size=(side, side), mode="bilinear")[0]
        Image.fromarray((photo.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(folder / f"{i}.png")


def test_colorization_trains_and_translates_to_rgb_with_the_input_lightness(tmp_path: Path) -> None:
    smooth_photos(tmp_path / "photos", 6, 48, seed=0)
    data, run, out = tmp_path / "pairs", tmp_path / "run", tmp_path / "out"
    assert main(["data", "prepare-colorization", "--photos", str(tmp_path / "photos"), "--out", str(data),
                 "--size", "32", "--val-fraction", "0.34", "--quiet"]) == 0
    assert main(["train", "--generator", "colorization", "--data", str(data), "--out", str(run), "--size", "32",
                 "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    # 4 train photos at batch 4: one step per epoch, a sample grid (grey | output | photo, 2 val rows) per epoch
    grid = np.asarray(Image.open(run / "samples" / "epoch_002.png"))
    assert grid.shape == (64, 96, 3)
    assert np.abs(grid[:, :32].astype(int) - grid[:, :32, :1]).max() <= 1  # the input tile is neutral grey
    assert main(["translate", "--run", str(run), "--data", str(data), "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in (data / "val").iterdir()) and len(names) == 2
    for name in names:
        fake = np.asarray(Image.open(out / name))
        assert fake.shape == (32, 32, 3)
        grey = np.asarray(Image.open(data / "val" / name))[:, :32]
        # L recombined with the predicted ab: the output's lightness is the input's (up to 8-bit rounding and
        # the clipping of out-of-gamut colours)
        diff = np.abs(rgb2lab(fake / 255.0)[..., 0] - rgb2lab(grey / 255.0)[..., 0])
        assert np.median(diff) < 1.0


def test_the_l2_row_minimises_the_mean_squared_error() -> None:
    cfg = load_generator("colorization_l2", {"size": 32})
    torch.manual_seed(0)
    gen = build_generator(cfg)
    x, y = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 2, 32, 32) * 2 - 1
    fake = gen(x)
    total, terms = generator_loss(cfg, gen, None, x, y, fake)
    by_hand = float(np.mean((fake.detach().numpy() - y.numpy()) ** 2))
    assert set(terms) == {"G_MSE", "G"} and total.item() == pytest.approx(by_hand, rel=1e-5)


def write_pairs(folder: Path, names: list[str], side: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True)
    for name in names:
        write_png(folder / f"{name}.png", torch.randint(0, 256, (3, side, 2 * side), generator=g, dtype=torch.uint8))


@pytest.mark.parametrize("variant", ["maps_map2photo", "maps_photo2map"])
def test_maps_train_small_and_translate_at_512(variant: str, tmp_path: Path) -> None:
    write_pairs(tmp_path / "maps" / "train", ["1", "2"], 64, seed=1)
    write_pairs(tmp_path / "maps" / "val", ["1101"], 512, seed=2)
    run = tmp_path / "run"
    assert main(["train", "--generator", variant, "--data", str(tmp_path / "maps"), "--out", str(run), "--size", "64",
                 "--max-steps", "1", "--device", "cpu", "--quiet"]) == 0
    assert main(["translate", "--run", str(run), "--data", str(tmp_path / "maps"), "--out", str(tmp_path / "out"),
                 "--size", "512", "--device", "cpu", "--quiet"]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "1101.png")).shape == (512, 512, 3)


def test_edges_to_shoes_trains_at_batch_four(tmp_path: Path) -> None:
    write_pairs(tmp_path / "shoes" / "train", [str(i) for i in range(8)], 32, seed=3)
    run = tmp_path / "run"
    assert main(["train", "--generator", "edges_shoes", "--data", str(tmp_path / "shoes"), "--out", str(run),
                 "--size", "32", "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    saved = load_generator(run / "config.toml")
    assert (saved.batch_size, saved.direction, saved.epochs) == (4, "AtoB", 15)
