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
    assert {"pixel_accuracy", "class_accuracy", "class_iou", "per_class", "ci95", "images", "segmenter", "note"} <= set(res)
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


def _label_pixels(synth_small: Path, names: list[str]) -> list[int]:
    """Pixels per class of the val label PNGs of ``names``, read with PIL (an independent count)."""
    pixels = np.zeros(19, dtype=np.int64)
    for name in names:
        ids = np.array(Image.open(synth_small / "val_labels" / f"{name}.png"))
        pixels += np.bincount(ids[ids < 19], minlength=19)
    return pixels.tolist()


def test_a_subset_of_frames_is_scored_and_marked(synth_small: Path, segmenter: Path, photos: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(photos, partial)
    first = sorted(partial.iterdir())[0]
    first.unlink()
    res = _score(["--images", str(partial), "--data", str(synth_small), "--segmenter", str(segmenter)], tmp_path)
    n_val = len(list((synth_small / "val").iterdir()))
    assert res["images"] == n_val - 1 and res["subset"] is True and res["frames_available"] == n_val
    assert "subset" in capsys.readouterr().out
    kept = sorted(p.stem for p in partial.iterdir())
    assert [row["pixels"] for row in res["per_class"].values()] == _label_pixels(synth_small, kept)
    full = _score(["--images", str(photos), "--data", str(synth_small), "--segmenter", str(segmenter)], tmp_path)
    assert full["subset"] is False and full["images"] == n_val


def test_pix2pix_test_output_folder_scores_the_fake_b_images(synth_small: Path, segmenter: Path, photos: Path,
                                                              tmp_path: Path) -> None:
    """The public code's test script writes N_real_A / N_fake_B / N_real_B into one folder (50 frames by default)."""
    out = tmp_path / "images"
    out.mkdir()
    frames = sorted(p.stem for p in photos.iterdir())[:3]
    black = np.zeros((64, 64, 3), dtype=np.uint8)
    for name in frames:
        shutil.copy(photos / f"{name}.png", out / f"{name}_fake_B.png")
        Image.fromarray(black).save(out / f"{name}_real_A.png")       # a label map: must not be scored
        Image.fromarray(black).save(out / f"{name}_real_B.png")
    res = _score(["--images", str(out), "--data", str(synth_small), "--segmenter", str(segmenter)], tmp_path)
    assert res["images"] == 3 and res["subset"] is True and "_fake_B" in res["note"]
    assert [row["pixels"] for row in res["per_class"].values()] == _label_pixels(synth_small, frames)
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in frames:
        shutil.copy(photos / f"{name}.png", plain / f"{name}.png")
    same = _score(["--images", str(plain), "--data", str(synth_small), "--segmenter", str(segmenter)], tmp_path, "p.json")
    assert same["per_class"] == res["per_class"]


def test_extra_images_and_missing_segmenter_are_user_errors(synth_small: Path, segmenter: Path, photos: Path,
                                                            tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    extra = tmp_path / "extra"
    shutil.copytree(photos, extra)
    first = sorted(extra.iterdir())[0]
    (extra / "extra_frame.png").write_bytes(first.read_bytes())
    rc = main(["fcn-score", "--images", str(extra), "--data", str(synth_small), "--segmenter", str(segmenter)])
    err = capsys.readouterr().err
    assert rc == 2 and "extra_frame.png" in err and "no label" in err
    rc = main(["fcn-score", "--images", str(photos), "--data", str(synth_small), "--segmenter", str(tmp_path / "nope.pt")])
    assert rc == 2 and "nope.pt" in capsys.readouterr().err
    rc = main(["fcn-score", "--images", str(photos), "--data", str(synth_small), "--segmenter", str(segmenter),
               "--protocol", "original"])
    assert rc == 2 and "gtFine" in capsys.readouterr().err


@pytest.mark.realdata
def test_original_protocol_against_a_full_resolution_confusion_matrix(shared_data: Path, segmenter: Path,
                                                                       tmp_path: Path) -> None:
    """--protocol original on the official sample: numbered images (via the frame list of prepare-cityscapes)
    against the gtFine labelIds at 2048x1024; class scores upsampled bilinearly before the argmax; class means
    diag / (sum + 1e-12).  The reference is computed here with cityscapesscripts' label table and fast_hist."""
    import torch
    import torch.nn.functional as F
    from cityscapesscripts.helpers.labels import labels as cs_labels

    from p2p_eval.segmentation.model import load_segmenter, logits

    root = shared_data / "cityscapes_official_sample"
    ab = tmp_path / "ab"
    assert main(["data", "prepare-cityscapes", "--root", str(root), "--out", str(ab), "--size", "64", "--quiet"]) == 0
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((ab / "train").iterdir()):
        arr = np.array(Image.open(p).convert("RGB"))
        Image.fromarray(arr[:, :64]).save(images / p.name)
    res = _score(["--images", str(images), "--labels", str(root / "gtFine" / "train"), "--frames",
                  str(ab / "train_frames.txt"), "--segmenter", str(segmenter), "--protocol", "original"], tmp_path)
    assert res["images"] == 8 and res["protocol"]["name"] == "original" and res["protocol"]["means"] == "original"

    lut = np.full(256, 255, dtype=np.int64)
    for lab in cs_labels:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    model, meta = load_segmenter(segmenter, "cpu")
    frames = (ab / "train_frames.txt").read_text().split()
    hist = np.zeros((19, 19), dtype=np.int64)
    for n, frame in enumerate(frames, start=1):
        photo = torch.from_numpy(np.array(Image.open(images / f"{n}.png").convert("RGB"))).permute(2, 0, 1)[None]
        gt = lut[np.array(Image.open(next((root / "gtFine" / "train").rglob(f"{frame}_gtFine_labelIds.png"))))]
        with torch.no_grad():
            scores = logits(model, meta, photo)                      # the segmenter's class scores at 64x64
        pred = F.interpolate(scores, size=gt.shape, mode="bilinear", align_corners=False).argmax(1)[0].numpy()
        assert gt.shape == (1024, 2048)
        hist += fast_hist(gt.flatten(), pred.flatten(), 19)
    diag = np.diag(hist).astype(float)
    assert res["pixel_accuracy"] == pytest.approx(diag.sum() / (hist.sum() + 1e-12), abs=2e-4)
    assert res["class_accuracy"] == pytest.approx(np.mean(diag / (hist.sum(1) + 1e-12)), abs=2e-3)
    assert res["class_iou"] == pytest.approx(np.mean(diag / (hist.sum(1) + hist.sum(0) - diag + 1e-12)), abs=2e-3)
    assert [row["pixels"] for row in res["per_class"].values()] == hist.sum(1).tolist()


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


def test_real_size_equals_scoring_photos_saved_at_that_size(synth_small: Path, segmenter: Path, photos: Path,
                                                            tmp_path: Path) -> None:
    """--real --real-size N scores the real photos exactly as a folder of the same photos written at N x N
    (torchvision's antialiased bilinear resize, lossless PNG) would be scored as generated images."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    small = tmp_path / "small"
    small.mkdir()
    for png in sorted(photos.iterdir()):
        chw = torch.from_numpy(np.array(Image.open(png).convert("RGB"))).permute(2, 0, 1)
        low = TF.resize(chw, [16, 16], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        Image.fromarray(low.permute(1, 2, 0).numpy()).save(small / png.name)
    seg = ["--segmenter", str(segmenter)]
    through = _score(["--data", str(synth_small), "--real", "--real-size", "16", *seg], tmp_path, "through.json")
    folder = _score(["--images", str(small), "--data", str(synth_small), *seg], tmp_path, "folder.json")
    assert through["source"]["through"] == 16
    for key in ("pixel_accuracy", "class_accuracy", "class_iou"):
        assert through[key] == pytest.approx(folder[key], abs=1e-12)
    full = _score(["--data", str(synth_small), "--real", *seg], tmp_path, "full.json")
    assert full["pixel_accuracy"] != pytest.approx(through["pixel_accuracy"], abs=1e-6)
    assert main(["fcn-score", "--images", str(small), "--data", str(synth_small), "--real-size", "16", *seg,
                 "--device", "cpu"]) != 0


def test_a_label_map_outside_its_folders_format_is_one_line(synth_small: Path, segmenter: Path, photos: Path,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    names = sorted(p.name for p in (synth_small / "val_labels").iterdir())
    for name in names:
        (labels / name).write_bytes((synth_small / "val_labels" / name).read_bytes())
    ids = np.array(Image.open(labels / names[0]))
    ids[:3, :3] = 250  # one 3x3 patch of 250 in a train-id map
    Image.fromarray(ids).save(labels / names[0])
    args = ["fcn-score", "--images", str(photos), "--labels", str(labels), "--segmenter", str(segmenter),
            "--device", "cpu", "--bootstrap", "0"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and names[0] in err and "value 250" in err
    assert main([*args, "--label-format", "labelids"]) == 2  # stated: 250 (and 255) are no labelIds
    assert "is not one of the official labelIds" in capsys.readouterr().err


# --- several sets: paired comparisons, the matching real row, pix2pix folders -------------------------------------
def _hand_scores(conf: np.ndarray) -> tuple[float, float, float]:
    """Pixel accuracy, class accuracy over classes with label pixels, IoU over classes in labels or predictions."""
    conf = conf.astype(float)
    diag, rows, cols = np.diag(conf), conf.sum(1), conf.sum(0)
    acc = [d / r for d, r in zip(diag, rows) if r > 0]
    iou = [d / (r + c - d) for d, r, c in zip(diag, rows, cols) if r + c - d > 0]
    return diag.sum() / conf.sum(), float(np.mean(acc)), float(np.mean(iou))


def _noise_copy(photos: Path, out: Path, names: list[str]) -> Path:
    """A clearly degraded copy: each photo replaced by uniform noise (seeded per frame)."""
    out.mkdir()
    for i, name in enumerate(names):
        shape = np.array(Image.open(photos / f"{name}.png").convert("RGB")).shape
        Image.fromarray(np.random.default_rng(i).integers(0, 256, shape).astype(np.uint8)).save(out / f"{name}.png")
    return out


def test_paired_comparison_matches_numpy_on_saved_per_image_matrices(synth_small: Path, segmenter: Path, photos: Path,
                                                                      tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frames = sorted((p.stem for p in photos.iterdir()), key=int)
    noise = _noise_copy(photos, tmp_path / "noise", frames[1:])        # one frame fewer: 5 shared frames
    seg = ["--data", str(synth_small), "--segmenter", str(segmenter), "--seed", "3"]
    for name, folder in (("a", photos), ("b", noise)):
        _score(["--images", str(folder), *seg, "--per-image", str(tmp_path / f"{name}.npz")], tmp_path, f"{name}.json")
    capsys.readouterr()
    res = _score(["--images", str(photos), "--images", str(noise), "--names", "photos,noise", *seg], tmp_path)
    out = capsys.readouterr().out
    assert "photos - noise" in out and "differences A - B" in out
    assert list(res["sets"]) == ["photos", "noise"] and res["sets"]["noise"]["images"] == len(frames) - 1
    (cmp,) = res["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["frames"], cmp["only_a"], cmp["only_b"]) == ("photos", "noise", len(frames) - 1, 1, 0)

    # Independent reference: the saved matrices, paired by name in the first set's order, the same draws.
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    index_b = {str(n): i for i, n in enumerate(b["names"])}
    shared = [(i, index_b[str(n)]) for i, n in enumerate(a["names"]) if str(n) in index_b]
    conf_a = a["confusions"][[i for i, _ in shared]]
    conf_b = b["confusions"][[j for _, j in shared]]
    draws = np.random.Generator(np.random.PCG64(3)).integers(0, len(shared), size=(200, len(shared)))
    reps = np.array([np.subtract(_hand_scores(conf_a[row].sum(0)), _hand_scores(conf_b[row].sum(0))) for row in draws])
    observed = np.subtract(_hand_scores(conf_a.sum(0)), _hand_scores(conf_b.sum(0)))
    for k, key in enumerate(("pixel_accuracy", "class_accuracy", "class_iou")):
        d = reps[:, k]
        assert cmp[key]["difference"] == pytest.approx(observed[k])
        assert cmp[key]["a"] == pytest.approx(_hand_scores(conf_a.sum(0))[k])
        assert cmp[key]["ci95"] == pytest.approx([np.percentile(d, 2.5), np.percentile(d, 97.5)])
        p = min(1.0, 2 * (min(np.sum(d <= 0), np.sum(d >= 0)) + 1) / (len(d) + 1))
        assert cmp[key]["p_value"] == pytest.approx(p)
    # The noise copy is clearly worse: every interval of (photos - noise) excludes 0.
    assert all(cmp[key]["ci95"][0] > 0 for key in ("pixel_accuracy", "class_accuracy", "class_iou"))


def test_identical_sets_differ_by_zero_with_a_zero_width_interval(synth_small: Path, segmenter: Path, photos: Path,
                                                                  tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(photos, copy)
    res = _score(["--images", str(photos), "--images", str(copy), "--names", "one", "--names", "two", "--per-class",
                  "--data", str(synth_small), "--segmenter", str(segmenter)], tmp_path)
    (cmp,) = res["comparisons"]
    assert cmp["frames"] == len(list(photos.iterdir()))
    for key in ("pixel_accuracy", "class_accuracy", "class_iou"):
        assert (cmp[key]["difference"], cmp[key]["ci95"], cmp[key]["p_value"]) == (0.0, [0.0, 0.0], 1.0)
    rows = [row["iou"] for row in cmp["per_class"].values() if row["iou"]["difference"] is not None]
    assert rows and all(row["difference"] == 0.0 and row["ci95"] in ([0.0, 0.0], [None, None]) for row in rows)


def test_names_must_match_the_folders(synth_small: Path, segmenter: Path, photos: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    base = ["fcn-score", "--data", str(synth_small), "--segmenter", str(segmenter), "--device", "cpu"]
    capsys.readouterr()
    assert main([*base, "--images", str(photos), "--images", str(photos)]) == 2     # both named 'photos'
    assert "distinct names" in capsys.readouterr().err
    assert main([*base, "--images", str(photos), "--images", str(photos), "--names", "x"]) == 2
    assert "1 name for 2" in capsys.readouterr().err
    assert main([*base, "--images", str(photos), "--names", "real", "--real"]) == 2
    assert "'real'" in capsys.readouterr().err


def test_real_row_covers_exactly_the_frames_of_the_images(synth_small: Path, segmenter: Path, photos: Path,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    kept = sorted((p.stem for p in photos.iterdir()), key=int)[2:]
    for name in kept:
        shutil.copy(photos / f"{name}.png", partial / f"{name}.png")
    capsys.readouterr()
    res = _score(["--images", str(partial), "--data", str(synth_small), "--real", "--segmenter", str(segmenter)],
                 tmp_path)
    assert "real" in capsys.readouterr().out
    real, gen = res["sets"]["real"], res["sets"]["partial"]
    n_val = len(list((synth_small / "val").iterdir()))
    assert real["images"] == gen["images"] == len(kept) and real["subset"] is True and real["frames_available"] == n_val
    assert [row["pixels"] for row in real["per_class"].values()] == _label_pixels(synth_small, kept)
    # The folder holds the real photos themselves (lossless PNG): the two rows agree and differ by 0.
    for key in ("pixel_accuracy", "class_accuracy", "class_iou"):
        assert real[key] == pytest.approx(gen[key], abs=1e-12)
    (cmp,) = res["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["frames"], cmp["only_a"], cmp["only_b"]) == ("partial", "real", len(kept), 0, 0)
    # --real alone still scores every frame.
    full = _score(["--data", str(synth_small), "--real", "--segmenter", str(segmenter)], tmp_path, "all.json")
    assert full["images"] == n_val and full["subset"] is False


def test_a_folder_mixing_fake_b_with_other_images_is_refused_unless_asked(synth_small: Path, segmenter: Path,
                                                                          photos: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "mixed"
    out.mkdir()
    frames = sorted((p.stem for p in photos.iterdir()), key=int)
    for name in frames[:3]:
        shutil.copy(photos / f"{name}.png", out / f"{name}_fake_B.png")
        Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(out / f"{name}_real_A.png")
    for name in frames[3:5]:
        shutil.copy(photos / f"{name}.png", out / f"{name}.png")                 # plain images beside them
    args = ["fcn-score", "--images", str(out), "--data", str(synth_small), "--segmenter", str(segmenter),
            "--device", "cpu", "--bootstrap", "0"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--only-fake-b" in err and f"{frames[3]}.png" in err and "2 other" in err
    res = _score(["--images", str(out), "--data", str(synth_small), "--segmenter", str(segmenter), "--only-fake-b"],
                 tmp_path)
    assert res["images"] == 3 and "2 others" in res["note"]
    assert [row["pixels"] for row in res["per_class"].values()] == _label_pixels(synth_small, frames[:3])
    assert main([*args[:2], str(photos), *args[3:], "--only-fake-b"]) == 2                 # no *_fake_B at all
    assert "no *_fake_B" in capsys.readouterr().err


def test_per_class_intervals_in_table_and_json(synth_small: Path, segmenter: Path, photos: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    res = _score(["--images", str(photos), "--data", str(synth_small), "--segmenter", str(segmenter), "--per-class"],
                 tmp_path)
    table = capsys.readouterr().out
    rows = [(name, row) for name, row in res["per_class"].items() if row["iou"] is not None]
    assert rows
    for name, row in rows:
        lo, hi = row["ci95"]["iou"]
        assert lo <= row["iou"] <= hi
        assert f"{row['iou']:.3f} [{lo:.3f}, {hi:.3f}]" in table
