"""Colorization data: Lab scaling against published CIE Lab values, the L -> ab data set, mirroring without jitter,
and ``data prepare-colorization`` (splits, grey inputs, halves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from p2p_eval.cli import main
from p2p_eval.data.aligned import AlignedDataset
from p2p_eval.data.lab import join_lab, split_lab
from p2p_eval.imageio import write_png


def unit(rgb: tuple[int, int, int]) -> torch.Tensor:
    """A 2x2 image of one sRGB colour, in [-1, 1]."""
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, 2, 2) / 127.5 - 1


@pytest.mark.parametrize(("rgb", "lab"), [
    ((255, 0, 0), (53.24, 80.09, 67.20)),     # sRGB red, D65 (published CIE Lab values)
    ((0, 255, 0), (87.73, -86.18, 83.18)),    # green
    ((0, 0, 255), (32.30, 79.19, -107.86)),   # blue
    ((255, 255, 255), (100.0, 0.0, 0.0)),     # white
])
def test_lab_scaling_of_the_public_code(rgb: tuple[int, int, int], lab: tuple[float, float, float]) -> None:
    lightness, ab = split_lab(unit(rgb))
    assert lightness.shape == (1, 2, 2) and ab.shape == (2, 2, 2)
    assert lightness[0, 0, 0].item() == pytest.approx(lab[0] / 50 - 1, abs=2e-3)   # L / 50 - 1
    assert ab[:, 0, 0].tolist() == pytest.approx([lab[1] / 110, lab[2] / 110], abs=2e-3)  # ab / 110
    assert join_lab(lightness, ab)[:, 0, 0].tolist() == pytest.approx(unit(rgb)[:, 0, 0].tolist(), abs=1e-4)


def write_ab(path: Path, left: np.ndarray, right: np.ndarray) -> None:
    write_png(path, torch.from_numpy(np.concatenate([left, right], axis=1)).permute(2, 0, 1).contiguous())


def test_lab_dataset_gives_l_of_the_target_and_its_ab(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_ab(tmp_path / "train" / "1.png", np.zeros_like(photo), photo)  # A ignored: L comes from the photo
    item = AlignedDataset(tmp_path, "train", direction="AtoB", size=16, color_space="lab")[0]
    lab = rgb2lab(photo / 255.0)
    assert item["input"].shape == (1, 16, 16) and item["target"].shape == (2, 16, 16)
    np.testing.assert_allclose(item["input"][0].numpy(), lab[..., 0] / 50 - 1, atol=1e-4)
    np.testing.assert_allclose(item["target"].permute(1, 2, 0).numpy(), lab[..., 1:] / 110, atol=1e-4)


def test_mirror_without_jitter_flips_but_never_crops(tmp_path: Path) -> None:
    photo = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    write_ab(tmp_path / "train" / "1.png", photo, photo)
    data = AlignedDataset(tmp_path, "train", direction="AtoB", size=16, jitter=False, mirror=True)
    expected = torch.from_numpy(photo).permute(2, 0, 1).float() / 127.5 - 1
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = data[0]["target"]
        flipped = torch.allclose(out, expected.flip(-1), atol=1e-6)
        assert flipped or torch.allclose(out, expected, atol=1e-6)
        seen.add(flipped)
    assert seen == {True, False}
    torch.manual_seed(0)
    unmirrored = AlignedDataset(tmp_path, "train", direction="AtoB", size=16, jitter=False)
    assert all(torch.allclose(unmirrored[0]["target"], expected, atol=1e-6) for _ in range(10))  # mirroring goes with the jitter


def test_prepare_colorization_splits_a_flat_folder_and_writes_grey_beside_colour(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    assert main(["data", "prepare-colorization", "--photos", str(photos), "--out", str(tmp_path / "out"),
                 "--size", "32", "--val-fraction", "0.5", "--quiet"]) == 0
    # every 2nd photo in name order (p1, p3) goes to val
    assert sorted(p.name for p in (tmp_path / "out" / "val").iterdir()) == ["p1.png", "p3.png"]
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == ["p0.png", "p2.png", "p4.png"]
    ab = np.asarray(Image.open(tmp_path / "out" / "train" / "p0.png"))
    assert ab.shape == (32, 64, 3)
    grey, colour = ab[:, :32].astype(int), ab[:, 32:]
    assert np.abs(grey - grey[..., :1]).max() <= 1  # R = G = B
    light_grey, light_colour = rgb2lab(ab[:, :32] / 255.0)[..., 0], rgb2lab(colour / 255.0)[..., 0]
    assert np.abs(light_grey - light_colour).max() < 0.5  # the grey keeps the photo's lightness


def test_prepare_colorization_keeps_splits_and_reads_a_half(tmp_path: Path) -> None:
    red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    for split in ("train", "val"):
        write_ab(tmp_path / "ab" / split / "1.png", red, blue)
    assert main(["data", "prepare-colorization", "--photos", str(tmp_path / "ab"), "--half", "A",
                 "--out", str(tmp_path / "out"), "--size", "8", "--quiet"]) == 0
    for split in ("train", "val"):
        colour = np.asarray(Image.open(tmp_path / "out" / split / "1.png"))[:, 8:]
        assert (colour == [255, 0, 0]).all()  # the left half (A) is the photo


def test_prepare_colorization_refuses_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["data", "prepare-colorization", "--photos", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "out"), "--quiet"]) == 2
    assert "no PNG or JPEG" in capsys.readouterr().err
