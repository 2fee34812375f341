"""``p2p-eval data prepare-cityscapes`` on the official sample, checked against labelIds read with PIL/numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from p2p_eval.cli import main
from p2p_eval.errors import UserError

SIZE = 64


def _reference(label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, official colours) of a labelIds PNG resized with PIL's nearest neighbour."""
    ids = np.asarray(Image.open(label_path).resize((SIZE, SIZE), Image.NEAREST))
    train = np.full(ids.shape, 255, np.uint8)
    colour = np.zeros(ids.shape + (3,), np.uint8)
    for i in np.unique(ids):
        lab = id2label[int(i)]
        train[ids == i] = lab.trainId if 0 <= lab.trainId < 255 else 255
        colour[ids == i] = lab.color
    return train, colour


@pytest.fixture(scope="module")
def prepared(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = shared_data / "cityscapes_official_sample"
    out = tmp_path_factory.mktemp("prepared")
    assert main(["data", "prepare-cityscapes", "--root", str(root), "--out", str(out), "--size", str(SIZE)]) == 0
    return root, out


@pytest.mark.realdata
def test_layout_and_numbering(prepared: tuple[Path, Path]) -> None:
    root, out = prepared
    frames = sorted(p.name[: -len("_leftImg8bit.png")] for p in root.glob("leftImg8bit/train/*/*_leftImg8bit.png"))
    assert len(frames) == 8
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(f"{n}.png" for n in range(1, 9))
    assert sorted(p.name for p in (out / "train_labels").iterdir()) == sorted(f"{n}.png" for n in range(1, 9))
    assert (out / "train_frames.txt").read_text().split() == frames
    assert not (out / "val").exists()


@pytest.mark.realdata
def test_pairs_match_official_labels(prepared: tuple[Path, Path]) -> None:
    root, out = prepared
    frames = (out / "train_frames.txt").read_text().split()
    for n, frame in enumerate(frames, start=1):
        city = frame.split("_")[0]
        train, colour = _reference(root / "gtFine" / "train" / city / f"{frame}_gtFine_labelIds.png")
        ab = np.asarray(Image.open(out / "train" / f"{n}.png"))
        assert ab.shape == (SIZE, 2 * SIZE, 3) and ab.dtype == np.uint8
        np.testing.assert_array_equal(ab[:, SIZE:], colour)
        labels = np.asarray(Image.open(out / "train_labels" / f"{n}.png"))
        assert labels.shape == (SIZE, SIZE) and labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, train)
        photo = np.asarray(Image.open(root / "leftImg8bit" / "train" / city / f"{frame}_leftImg8bit.png")
                           .convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)).astype(float)
        assert np.abs(ab[:, :SIZE].astype(float) - photo).mean() < 3.0


@pytest.mark.realdata
def test_prepared_colours_decode_to_the_labels(prepared: tuple[Path, Path]) -> None:
    """Lossless colour halves decode exactly, except polegroup (pole's colour, void id) -- none in the sample."""
    from p2p_eval.data.cityscapes import split_labels

    _, out = prepared
    from_colour = dict(split_labels(out, "train"))  # with train_labels/ present this reads those PNGs
    (out / "train_labels").rename(out / "hidden_labels")
    try:
        decoded = dict(split_labels(out, "train"))
    finally:
        (out / "hidden_labels").rename(out / "train_labels")
    assert from_colour.keys() == decoded.keys() and len(decoded) == 8
    for name in decoded:
        np.testing.assert_array_equal(decoded[name], from_colour[name])


def test_missing_partner_is_listed(tmp_path: Path) -> None:
    photo = tmp_path / "leftImg8bit" / "val" / "bonn"
    photo.mkdir(parents=True)
    (tmp_path / "gtFine" / "val" / "bonn").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(photo / "bonn_000001_000019_leftImg8bit.png")
    from p2p_eval.data.cityscapes import prepare_cityscapes

    with pytest.raises(UserError, match="bonn_000001_000019_gtFine_labelIds.png"):
        prepare_cityscapes(tmp_path, tmp_path / "out")


def test_root_without_gtfine(tmp_path: Path) -> None:
    (tmp_path / "leftImg8bit").mkdir()
    from p2p_eval.data.cityscapes import prepare_cityscapes

    with pytest.raises(UserError, match="gtFine"):
        prepare_cityscapes(tmp_path, tmp_path / "out")
