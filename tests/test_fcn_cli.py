"""`p2p-eval segmenter train` and `p2p-eval fcn-score` end to end on the small synthetic set: the JSON
contract, matching by name, the --real calibration row, saved predictions re-scored with the pix2pix
script's own histogram code, and the errors for missing / extra files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2p_eval.cli import main

pytestmark = pytest.mark.slow


def fast_hist(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """pix2pix scripts/eval_cityscapes/util.py (rows = labels, columns = predictions, void skipped)."""
    k = np.where((a >= 0) & (a < n))[0]
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2).reshape(n, n)


@pytest.fixture(scope="module")
def segmenter(synth_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seg") / "seg.pt"
    rc = main(["segmenter", "train", "--data", str(synth_small), "--out", str(out), "--epochs", "2", "--size", "64",
               "--device", "cpu", "--batch-size", "6", "--workers", "0"])
    assert rc == 0 and out.is_file()
    return out


@pytest.fixture(scope="module")
def photos(synth_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real val photos (left halves) as a folder of 'generated' images named like the frames."""
    out = tmp_path_factory.mktemp("photos")
    for ab in sorted((synth_small / "val").iterdir()):
        arr = np.array(Image.open(ab).convert("RGB"))
        Image.fromarray(arr[:, : arr.shape[1] // 2]).save(out / f"{ab.stem}.png")
    return out


def _score(args: list[str], tmp_path: Path, name: str = "out.json") -> dict:
    path = tmp_path / name
    assert main(["fcn-score", *args, "--json", str(path), "--device", "cpu", "--bootstrap", "200"]) == 0
    return json.loads(path.read_text())


def test_json_contract_real_row_and_rescoring(synth_small: Path, segmenter: Path, photos: Path, tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    res = _score(["--images", str(photos), "--data", str(synth_small), "--segmenter", str(segmenter),
                  "--save-predictions", str(preds)], tmp_path)
    assert {"pixel_accuracy", "class_accuracy", "class_iou", "per_class", "ci95", "images", "segmenter"} <= set(res)
    n_val = len(list((synth_small / "val").iterdir()))
    assert res["images"] == n_val
    assert res["segmenter"]["sha256"] == hashlib.sha256(segmenter.read_bytes()).hexdigest()
    assert res["segmenter"]["arch"] == "unet" and res["segmenter"]["input_size"] == 64
    assert len(res["per_class"]) == 19
    assert all(set(row) == {"accuracy", "iou", "pixels"} for row in res["per_class"].values())
    for key in ("pixel_accuracy", "class_accuracy", "class_iou"):
        lo, hi = res["ci95"][key]
        assert lo <= res[key] <= hi

    # Saved predictions, re-scored with the original script's histogram against the label PNGs.
    hist = np.zeros((19, 19), dtype=np.int64)
    for label in sorted((synth_small / "val_labels").iterdir()):
        pred = np.array(Image.open(preds / label.name))
        assert (preds / "color" / label.name).is_file()
        hist += fast_hist(np.array(Image.open(label)).flatten(), pred.flatten(), 19)
    assert res["pixel_accuracy"] == pytest.approx(np.diag(hist).sum() / hist.sum())
    assert [row["pixels"] for row in res["per_class"].values()] == hist.sum(1).tolist()

    # The same photos as the --real row, and with --labels instead of --data: the same scores.
    real = _score(["--data", str(synth_small), "--real", "--segmenter", str(segmenter)], tmp_path, "real.json")
    by_labels = _score(["--images", str(photos), "--labels", str(synth_small / "val_labels"),
                        "--segmenter", str(segmenter), "--per-image", str(tmp_path / "per_image.npz")],
                       tmp_path, "labels.json")
    saved = np.load(tmp_path / "per_image.npz")
    assert saved["confusions"].shape == (n_val, 19, 19)
    np.testing.assert_array_equal(saved["confusions"].sum(0), hist)
    assert sorted(saved["names"].tolist()) == sorted(p.stem for p in photos.iterdir())
    for other in (real, by_labels):
        assert other["pixel_accuracy"] == pytest.approx(res["pixel_accuracy"])
        assert other["class_iou"] == pytest.approx(res["class_iou"], nan_ok=True)
    assert by_labels["ci95"] == res["ci95"]  # same seed, same per-image matrices


def test_resizes_images_to_the_segmenter_input(synth_small: Path, segmenter: Path, photos: Path, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for p in photos.iterdir():
        Image.open(p).resize((128, 128), Image.BILINEAR).save(big / p.name)
    res = _score(["--images", str(big), "--data", str(synth_small), "--segmenter", str(segmenter)], tmp_path)
    assert res["images"] == len(list(photos.iterdir())) and res["pixel_accuracy"] is not None


def test_missing_and_extra_images_are_user_errors(synth_small: Path, segmenter: Path, photos: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(photos, partial)
    first = sorted(partial.iterdir())[0]
    first.unlink()
    rc = main(["fcn-score", "--images", str(partial), "--data", str(synth_small), "--segmenter", str(segmenter)])
    err = capsys.readouterr().err
    assert rc == 2 and "have no image" in err and first.stem in err
    (partial / "extra_frame.png").write_bytes((photos / first.name).read_bytes())
    (partial / first.name).write_bytes((photos / first.name).read_bytes())
    rc = main(["fcn-score", "--images", str(partial), "--data", str(synth_small), "--segmenter", str(segmenter)])
    err = capsys.readouterr().err
    assert rc == 2 and "extra_frame.png" in err and "no label" in err
    rc = main(["fcn-score", "--images", str(photos), "--data", str(synth_small), "--segmenter", str(tmp_path / "nope.pt")])
    assert rc == 2 and "nope.pt" in capsys.readouterr().err


@pytest.mark.realdata
def test_official_names_and_gtfine_folder(shared_data: Path, segmenter: Path, tmp_path: Path) -> None:
    """The original script's layout: <frame>_leftImg8bit.png images against a gtFine folder (which also
    holds instance maps); labels are the labelIds, resized by nearest neighbour."""
    from cityscapesscripts.helpers.labels import labels as cs_labels

    root = shared_data / "cityscapes_official_sample"
    images = tmp_path / "images"
    images.mkdir()
    photos = sorted((root / "leftImg8bit" / "train" / "aachen").glob("*_leftImg8bit.png"))[:2]
    for p in photos:
        Image.open(p).resize((128, 64), Image.BILINEAR).save(images / p.name)
    gt = tmp_path / "gt"
    gt.mkdir()
    for p in photos:
        frame = p.name[: -len("_leftImg8bit.png")]
        for kind in ("labelIds", "instanceIds"):
            shutil.copy(root / "gtFine" / "train" / "aachen" / f"{frame}_gtFine_{kind}.png", gt)
    res = _score(["--images", str(images), "--labels", str(gt), "--segmenter", str(segmenter)], tmp_path)
    assert res["images"] == 2
    lut = np.full(256, 255, dtype=np.uint8)
    for lab in cs_labels:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    pixels = np.zeros(19, dtype=np.int64)
    for p in photos:
        ids = lut[np.array(Image.open(gt / p.name.replace("leftImg8bit", "gtFine_labelIds")))]
        small = ids[(np.arange(64) * 1024 + 512) // 64][:, (np.arange(64) * 2048 + 1024) // 64]  # nearest, 64x64
        pixels += np.bincount(small[small < 19], minlength=19)
    assert [row["pixels"] for row in res["per_class"].values()] == pixels.tolist()
