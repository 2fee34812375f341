"""The paper's full-resolution protocol on the 8 official Cityscapes frames at a reduced size: a segmenter
trained on whole non-square frames records them (``input_hw``), and ``fcn-score --protocol original`` with it
upsamples each generated image to its label's size and segments it there (the pix2pix evaluation script's
computation), checked against a confusion matrix computed here with the script's ``fast_hist``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from p2p_eval.cli import main
from p2p_eval.errors import UserError
from p2p_eval.segmentation.model import load_segmenter, logits
from p2p_eval.segmentation.train import SegmenterRecipe, train_segmenter

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def fast_hist(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """pix2pix scripts/eval_cityscapes/util.py: rows = labels, columns = predictions, values outside [0, n) skipped."""
    k = np.where((a >= 0) & (a < n))[0]
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)


def _train_ids() -> np.ndarray:
    from cityscapesscripts.helpers.labels import labels as cs_labels

    lut = np.full(256, 255, dtype=np.int64)
    for lab in cs_labels:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    return lut


@pytest.fixture(scope="module")
def official(shared_data: Path) -> Path:
    return shared_data / "cityscapes_official_sample"


@pytest.fixture(scope="module")
def wide_segmenter(official: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wide") / "seg.pt"
    train_segmenter(official, out, SegmenterRecipe(epochs=1, size=256, height=128, crop=128, batch_size=4),
                    device="cpu", cache_dir=None, eval_every=0, num_workers=0, progress=False)
    return out


def _frames(official: Path) -> list[Path]:
    return sorted((official / "leftImg8bit" / "train" / "aachen").glob("*_leftImg8bit.png"))


def _labels_at(official: Path, out: Path, size: tuple[int, int]) -> Path:
    """The gtFine labelIds of the frames resized (nearest) to ``size`` = (width, height): a reduced official folder."""
    (out / "aachen").mkdir(parents=True)
    for photo in _frames(official):
        name = photo.name.replace("leftImg8bit", "gtFine_labelIds")
        Image.open(official / "gtFine" / "train" / "aachen" / name).resize(size, Image.NEAREST).save(out / "aachen" / name)
    return out


def test_a_non_square_segmenter_records_its_frames(wide_segmenter: Path) -> None:
    _, meta = load_segmenter(wide_segmenter, "cpu")
    assert meta["input_hw"] == [128, 256] and meta["input_size"] == 256
    assert meta["trained_on"]["layout"] == "official" and meta["trained_on"]["images"] == 8
    with pytest.raises(UserError, match="multiples of 32"):
        train_segmenter(Path("unused"), Path("unused.pt"), SegmenterRecipe(size=256, height=100))


def test_original_protocol_segments_at_the_label_size(official: Path, wide_segmenter: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for photo in _frames(official):                      # 64x64 'generated' images named as the script's
        Image.open(photo).convert("RGB").resize((64, 64), Image.BILINEAR).save(images / photo.name)
    labels = _labels_at(official, tmp_path / "gt", (256, 128))
    preds, out = tmp_path / "preds", tmp_path / "res.json"
    capsys.readouterr()
    assert main(["fcn-score", "--images", str(images), "--labels", str(labels), "--protocol", "original",
                 "--segmenter", str(wide_segmenter), "--save-predictions", str(preds), "--json", str(out),
                 "--device", "cpu", "--bootstrap", "0", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    res = json.loads(out.read_text())
    assert res["images"] == 8 and res["protocol"]["images"].startswith("upsampled")
    assert res["segmenter"]["input_hw"] == [128, 256]

    lut = _train_ids()
    model, meta = load_segmenter(wide_segmenter, "cpu")
    saved = np.zeros((19, 19), dtype=np.int64)
    for photo in _frames(official):
        frame = photo.name[: -len("_leftImg8bit.png")]
        gt = lut[np.array(Image.open(labels / "aachen" / f"{frame}_gtFine_labelIds.png"))]
        pred = np.array(Image.open(preds / f"{frame}.png"))
        assert pred.shape == gt.shape == (128, 256)
        saved += fast_hist(gt.flatten(), pred.flatten().astype(int), 19)
    first = _frames(official)[0]                       # one frame segmented here: upsample, then segment
    small = torch.from_numpy(np.array(Image.open(images / first.name))).permute(2, 0, 1)[None].float()
    big = F.interpolate(small, size=(128, 256), mode="bilinear", align_corners=False).round().clamp(0, 255)
    with torch.no_grad():
        own = logits(model, meta, big.to(torch.uint8)).argmax(1)[0].numpy()
    theirs = np.array(Image.open(preds / f"{first.name[: -len('_leftImg8bit.png')]}.png"))
    assert (own == theirs).mean() > 0.99
    diag = np.diag(saved).astype(float)
    assert res["pixel_accuracy"] == pytest.approx(diag.sum() / (saved.sum() + 1e-12), abs=1e-9)
    assert res["class_iou"] == pytest.approx(np.mean(diag / (saved.sum(1) + saved.sum(0) - diag + 1e-12)), abs=1e-9)
    assert [row["pixels"] for row in res["per_class"].values()] == saved.sum(1).tolist()


def test_far_from_the_training_resolution_warns_once(official: Path, wide_segmenter: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for photo in _frames(official)[:2]:
        Image.open(photo).convert("RGB").resize((64, 64), Image.BILINEAR).save(images / photo.name)
    labels = _labels_at(official, tmp_path / "gt", (512, 256))
    capsys.readouterr()
    assert main(["fcn-score", "--images", str(images), "--labels", str(labels), "--protocol", "original",
                 "--segmenter", str(wide_segmenter), "--device", "cpu", "--bootstrap", "0", "--quiet"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "256x128" in warnings[0] and "512x256" in warnings[0]


def test_size_takes_a_side_or_width_x_height() -> None:
    from p2p_eval.cli import build_parser

    def parsed(size: str) -> tuple:
        return build_parser().parse_args(["segmenter", "train", "--data", "d", "--out", "o", "--size", size]).size

    assert parsed("1024x512") == (1024, 512) and parsed("256") == (256, None)
