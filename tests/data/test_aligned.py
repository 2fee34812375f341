"""AB and folder-pair datasets and the paired jitter, checked against numpy / PIL references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p2p_eval.data.aligned import AlignedDataset, FolderPairDataset
from p2p_eval.data.transforms import load_size, pair_transform
from p2p_eval.errors import UserError


def _unit(arr: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float (3, H, W) in [-1, 1], computed by hand."""
    return arr.transpose(2, 0, 1).astype(np.float64) / 127.5 - 1.0


def _ramp(h: int, w: int) -> np.ndarray:
    """An image whose every pixel is unique and asymmetric: R = x ramp, G = y ramp, B = x*y."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x * y) * 255 // ((w - 1) * (h - 1))], axis=2).astype(np.uint8)


@pytest.fixture()
def ab_folder(tmp_path: Path) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    a_halves, b_halves = [], []
    (tmp_path / "train").mkdir()
    for i in range(1, 4):
        a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        b = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([a, b], axis=1)).save(tmp_path / "train" / f"{i}.png")
        a_halves.append(a)
        b_halves.append(b)
    return tmp_path, a_halves, b_halves


def test_load_size_matches_paper() -> None:
    assert load_size(256) == 286
    assert load_size(64) == 72  # 64 * 286 / 256 = 71.5
    assert load_size(128) == 143


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_ab_halves_and_direction(ab_folder, direction: str) -> None:
    root, a_halves, b_halves = ab_folder
    ds = AlignedDataset(root, "train", direction=direction, size=32, jitter=False)
    assert len(ds) == 3
    for i in range(3):
        item = ds[i]
        assert item["name"] == str(i + 1) and item["index"] == i
        src, dst = (a_halves[i], b_halves[i]) if direction == "AtoB" else (b_halves[i], a_halves[i])
        assert item["input"].dtype == torch.float32 and item["input"].shape == (3, 32, 32)
        np.testing.assert_allclose(item["input"].numpy(), _unit(src), atol=1e-6)
        np.testing.assert_allclose(item["target"].numpy(), _unit(dst), atol=1e-6)


def test_split_none_reads_root_itself(ab_folder) -> None:
    root, _, _ = ab_folder
    assert len(AlignedDataset(root / "train", split=None, size=32)) == 3


def test_resize_without_jitter_matches_pil_bicubic(tmp_path: Path) -> None:
    photo = _ramp(48, 48)
    Image.fromarray(np.concatenate([photo, photo], axis=1)).save(tmp_path / "1.png")
    item = AlignedDataset(tmp_path, None, size=32)[0]
    ref = np.asarray(Image.fromarray(photo).resize((32, 32), Image.BICUBIC))
    assert np.abs(item["input"].numpy() - _unit(ref)).max() < 3 / 127.5


def test_jitter_same_crop_and_flip_on_both_sides() -> None:
    """B = 255 - A with A unique per pixel: any difference in crop or flip would break target == -input."""
    a = _ramp(64, 64)
    b = 255 - a
    transform = pair_transform(64, jitter=True)
    ref = _unit(np.asarray(Image.fromarray(a).resize((72, 72), Image.BICUBIC)))
    flips, offsets = set(), set()
    for seed in range(40):
        torch.manual_seed(seed)
        x, y = transform(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1))
        assert x.shape == y.shape == (3, 64, 64)
        assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
        np.testing.assert_allclose(y.numpy(), -x.numpy(), atol=2.5 / 127.5)
        flipped = bool(x[0, :, 0].mean() > x[0, :, -1].mean())  # the R ramp runs left to right unless mirrored
        flips.add(flipped)
        # locate the crop in the 72x72 resized image (reference: PIL bicubic) by exhaustive search
        xs = x.numpy()[:, :, ::-1] if flipped else x.numpy()
        errs = {(i, j): np.abs(ref[:, i:i + 64, j:j + 64] - xs).mean() for i in range(9) for j in range(9)}
        best = min(errs, key=errs.get)
        assert errs[best] < 2 / 127.5
        offsets.add(best)
    assert flips == {True, False}
    assert len(offsets) > 5


def test_no_jitter_is_deterministic() -> None:
    a = torch.from_numpy(_ramp(40, 40)).permute(2, 0, 1)
    t = pair_transform(32, jitter=False)
    x1, _ = t(a, a)
    x2, _ = t(a, a)
    assert torch.equal(x1, x2) and x1.shape == (3, 32, 32)


def test_odd_width_is_user_error(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((16, 33, 3), np.uint8)).save(tmp_path / "bad.png")
    with pytest.raises(UserError, match="bad.png"):
        AlignedDataset(tmp_path, None, size=16)


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no PNG or JPEG"):
        AlignedDataset(tmp_path, None)
    with pytest.raises(UserError, match="val"):
        AlignedDataset(tmp_path, "val")
    with pytest.raises(UserError, match="direction"):
        AlignedDataset(tmp_path, None, direction="AB")


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_pairs_matched_by_stem(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pairs = {}
    for name, ext in (("x", "png"), ("y", "jpg"), ("z", "png")):
        a = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        b = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        _save(tmp_path / "A" / f"{name}.png", a)
        _save(tmp_path / "B" / f"{name}.{ext}", b)
        pairs[name] = (a, np.asarray(Image.open(tmp_path / "B" / f"{name}.{ext}").convert("RGB")))
    ds = FolderPairDataset(tmp_path / "A", tmp_path / "B", direction="BtoA", size=24)
    assert [ds[i]["name"] for i in range(len(ds))] == ["x", "y", "z"]
    for i in range(3):
        a, b = pairs[ds[i]["name"]]
        np.testing.assert_allclose(ds[i]["target"].numpy(), _unit(a), atol=1e-6)
        # JPEG decoders (PIL vs torchvision) may differ by a level or two
        assert np.abs(ds[i]["input"].numpy() - _unit(b)).max() <= 3 / 127.5


def test_folder_pairs_missing_partner_lists_files(tmp_path: Path) -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    for n in ("1", "2", "3"):
        _save(tmp_path / "A" / f"{n}.png", img)
    for n in ("1", "4"):
        _save(tmp_path / "B" / f"{n}.png", img)
    with pytest.raises(UserError) as err:
        FolderPairDataset(tmp_path / "A", tmp_path / "B")
    msg = str(err.value)
    assert "2.png" in msg and "3.png" in msg and "4.png" in msg and "1.png" not in msg


def test_folder_pairs_size_mismatch_lists_files(tmp_path: Path) -> None:
    _save(tmp_path / "A" / "1.png", np.zeros((8, 8, 3), np.uint8))
    _save(tmp_path / "B" / "1.png", np.zeros((8, 10, 3), np.uint8))
    _save(tmp_path / "A" / "2.png", np.zeros((8, 8, 3), np.uint8))
    _save(tmp_path / "B" / "2.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match=r"1\.png") as err:
        FolderPairDataset(tmp_path / "A", tmp_path / "B")
    assert "2.png" not in str(err.value)


@pytest.mark.realdata
def test_cityscapes_val_pairs(shared_data: Path) -> None:
    ds = AlignedDataset(shared_data / "cityscapes", "val", direction="BtoA", size=256)
    assert len(ds) == 500
    for i in (0, 137, 499):
        item = ds[i]
        assert item["input"].shape == item["target"].shape == (3, 256, 256)
        ab = np.asarray(Image.open(shared_data / "cityscapes" / "val" / f"{item['name']}.jpg").convert("RGB"))
        assert ab.shape == (256, 512, 3)
        # BtoA: input = right half (label colours), target = left half (photo)
        assert np.abs(item["input"].numpy() - _unit(ab[:, 256:])).mean() < 0.01
        assert np.abs(item["target"].numpy() - _unit(ab[:, :256])).mean() < 0.01
    assert ds[9]["name"] == "10"  # natural order: 1, 2, ..., 10


@pytest.mark.realdata
def test_facades_pairs(shared_data: Path) -> None:
    for split, count in (("train", 400), ("val", 100), ("test", 106)):
        ds = AlignedDataset(shared_data / "facades", split, direction="BtoA", size=256, jitter=split == "train")
        assert len(ds) == count
        item = ds[0]
        assert item["input"].shape == item["target"].shape == (3, 256, 256)
        assert -1.0 <= float(item["input"].min()) and float(item["input"].max()) <= 1.0


def test_split_ab_and_ab_half_cut_at_the_middle(tmp_path: Path) -> None:
    from p2p_eval.data.aligned import ab_half, split_ab

    ab = torch.arange(2 * 3 * 8, dtype=torch.uint8).reshape(2, 3, 8)  # any leading dims; A | B on the last
    a, b = split_ab(ab, "x.png")
    assert torch.equal(a, ab[..., :4]) and torch.equal(b, ab[..., 4:])
    assert torch.equal(ab_half(ab, "x.png", "A"), a) and torch.equal(ab_half(ab, "x.png", "B"), b)
    assert torch.equal(torch.cat([a, b], dim=-1), ab)
    with pytest.raises(UserError, match="odd.png is 7 pixels wide"):
        split_ab(ab[..., :7], tmp_path / "odd.png")
    with pytest.raises(ValueError):
        ab_half(ab, "x.png", "C")


def test_data_halves_writes_each_half_losslessly(tmp_path: Path) -> None:
    from p2p_eval.cli import main

    rng = np.random.default_rng(3)
    ab = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    (tmp_path / "d" / "val").mkdir(parents=True)
    Image.fromarray(ab).save(tmp_path / "d" / "val" / "7.png")
    for half, expected in (("A", ab[:, :5]), ("B", ab[:, 5:])):
        assert main(["data", "halves", "--data", str(tmp_path / "d"), "--half", half, "--out",
                     str(tmp_path / half), "--quiet"]) == 0
        assert np.array_equal(np.asarray(Image.open(tmp_path / half / "7.png")), expected)
