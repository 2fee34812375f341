"""Segmenter: building, local encoder weights, data layouts, training crops, class weights, one-file
checkpoints, exact resume, learning, fp16 safetensors export and the errors for a checkpoint made for other
classes or another input size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p2p_eval.data.cityscapes import PALETTE, TRAIN_CLASSES
from p2p_eval.errors import UserError
from p2p_eval.segmentation import data as seg_data
from p2p_eval.segmentation import model as seg
from p2p_eval.segmentation import train as seg_train


def _tiny_ab(root: Path, n_train: int = 8, n_val: int = 4, size: int = 64, labels_dir: bool = True) -> dict:
    """AB pairs: photo = palette colour of the label + noise | exact colour label; optional train-id PNGs."""
    rng = np.random.default_rng(0)
    truth = {}
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True)
        if labels_dir:
            (root / f"{split}_labels").mkdir()
        for i in range(1, n + 1):
            ids = np.zeros((size, size), dtype=np.uint8)
            cut = int(rng.integers(size // 4, 3 * size // 4))
            ids[:, cut:] = 10                     # road-ish left (0), sky (10) right
            ids[: size // 8] = 2                  # a band of building on top
            ids[-2:, :4] = 255                    # a few void pixels
            colour = np.zeros((size, size, 3), dtype=np.uint8)
            colour[ids != 255] = PALETTE[ids[ids != 255]]
            photo = np.clip(colour.astype(int) + rng.integers(-10, 10, colour.shape), 0, 255).astype(np.uint8)
            Image.fromarray(np.concatenate([photo, colour], axis=1)).save(root / split / f"{i}.png")
            if labels_dir:
                Image.fromarray(ids).save(root / f"{split}_labels" / f"{i}.png")
            truth[(split, str(i))] = ids
    return truth


def test_build_segmenter_and_unknown_names() -> None:
    model = seg.build_segmenter(num_classes=19).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 19, 64, 64)
    with pytest.raises(UserError, match="fpn"):
        seg.build_segmenter("segnet")
    with pytest.raises(UserError, match="resnet18"):
        seg.build_segmenter("fpn", "resnet1000")


def test_local_encoder_weights(tmp_path: Path) -> None:
    donor = seg.build_segmenter("unet", "resnet18")
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in donor.encoder.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)  # as in torchvision's file
    torch.save(state, tmp_path / "resnet18.pth")
    model = seg.build_segmenter("fpn", "resnet18", encoder_weights=tmp_path / "resnet18.pth")
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(UserError, match="do not fit|wrong shapes"):
        seg.build_segmenter("fpn", "resnet34", encoder_weights=tmp_path / "resnet18.pth")
    with pytest.raises(UserError, match="not found"):
        seg.build_segmenter("fpn", "resnet18", encoder_weights=tmp_path / "missing.pth")


@pytest.mark.parametrize("labels_dir", [True, False])
def test_ab_layout_labels_from_png_or_colour(tmp_path: Path, labels_dir: bool) -> None:
    truth = _tiny_ab(tmp_path, labels_dir=labels_dir)
    pairs = seg_data.split_pairs(tmp_path, "val")
    assert [p.name for p in pairs] == ["1", "2", "3", "4"]
    for pair in pairs:
        ids = seg_data.read_label(pair).numpy()
        np.testing.assert_array_equal(ids, truth[("val", pair.name)])
        assert tuple(seg_data.read_photo(pair).shape) == (3, 64, 64)
        small = seg_data.read_label(pair, 32).numpy()
        np.testing.assert_array_equal(small, truth[("val", pair.name)][1::2, 1::2])  # nearest: every other pixel


@pytest.mark.realdata
def test_official_layout(shared_data: Path) -> None:
    from cityscapesscripts.helpers.labels import labels as cs_labels

    root = shared_data / "cityscapes_official_sample"
    pairs = seg_data.split_pairs(root, "train")
    assert len(pairs) == 8 and all(p.name.startswith("aachen_") for p in pairs)
    lut = np.full(256, 255, dtype=np.uint8)
    for lab in cs_labels:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    ref = lut[np.array(Image.open(pairs[0].label))]
    np.testing.assert_array_equal(seg_data.read_label(pairs[0]).numpy(), ref)


def test_training_crops_keep_photo_and_labels_aligned() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.zeros(2, 96, 96, dtype=torch.uint8)
    ids[:, :, 40:] = 10
    ids[1, 60:70, 5:9] = 5                                           # a small 'pole' in frame 1
    photos = torch.where(ids == 10, 230, 20).to(torch.uint8)[:, None].expand(2, 3, 96, 96).clone()
    photos[1][:, ids[1] == 5] = 120
    weights = torch.ones(19)
    for _ in range(20):
        x, y = seg_train.sample_batch(photos, ids, torch.tensor([0, 1]), 64, (0.75, 1.5), 0.0, weights, gen)
        assert x.shape == (2, 3, 64, 64) and y.shape == (2, 64, 64) and y.dtype == torch.int64
        for p, lab in zip(x, y):
            gray = p.float().mean(0)
            assert set(torch.unique(lab).tolist()) <= {0, 5, 10}
            if (lab == 0).sum() > 50 and (lab == 10).sum() > 50:   # away from the resampled boundary
                assert gray[lab == 0].mean() + 80 < gray[lab == 10].mean()


def test_rare_crops_are_centred_on_the_weighted_class() -> None:
    gen = torch.Generator().manual_seed(1)
    ids = torch.zeros(1, 128, 128, dtype=torch.uint8)
    ids[0, 100:110, 3:6] = 5                                         # 30 pole pixels in a corner
    photos = torch.zeros(1, 3, 128, 128, dtype=torch.uint8)
    weights = torch.zeros(19)
    weights[5] = 1.0
    hits = sum(int((seg_train.sample_batch(photos, ids, torch.tensor([0]), 32, (1.0, 1.0), 1.0, weights, gen)[1] == 5)
                   .any()) for _ in range(30))
    assert hits == 30
    uniform = sum(int((seg_train.sample_batch(photos, ids, torch.tensor([0]), 32, (1.0, 1.0), 0.0, weights, gen)[1] == 5)
                      .any()) for _ in range(60))
    assert uniform < 30                                              # a uniform 32 px window rarely holds it


def test_class_weights_by_hand() -> None:
    labels = torch.tensor([[0] * 60 + [1] * 30 + [2] * 10 + [255] * 5], dtype=torch.uint8)
    w = seg_train.class_weights(labels, 4, 0.5)
    freq = np.array([0.6, 0.3, 0.1])
    expected = np.sqrt(np.median(freq) / freq)
    np.testing.assert_allclose(w[:3].numpy(), expected, rtol=1e-6)
    assert float(w[3]) == pytest.approx(expected.max())               # unseen class: the largest weight
    assert torch.equal(seg_train.class_weights(labels, 4, 0.0)[:3], torch.ones(3))


def _kwargs(tmp_path: Path, **extra) -> dict:
    return {"epochs": 2, "size": 64, "crop": 32, "device": "cpu", "batch_size": 4, "num_workers": 0, "progress": False,
            "cache_dir": tmp_path / "cache", "eval_every": 0, **extra}


def test_resume_is_exact_and_errors_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _tiny_ab(data)
    full = seg_train.train_segmenter(data, tmp_path / "full.pt", **_kwargs(tmp_path))
    out = tmp_path / "seg.pt"
    partial = tmp_path / "seg.pt.partial"
    assert seg_train.train_segmenter(data, out, **_kwargs(tmp_path, max_epochs_this_run=1)) == partial
    assert partial.is_file() and not out.exists()
    with pytest.raises(UserError, match="unfinished"):
        seg.load_segmenter(partial, "cpu")
    with pytest.raises(UserError, match="other settings"):
        seg_train.train_segmenter(data, out, resume=True, **{**_kwargs(tmp_path), "batch_size": 2})
    assert seg_train.train_segmenter(data, out, resume=True, **_kwargs(tmp_path)) == out
    assert not partial.exists()
    a, b = seg.load_segmenter(full, "cpu")[0].state_dict(), seg.load_segmenter(out, "cpu")[0].state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k                            # same weights as the uninterrupted run
    log = [line for line in (tmp_path / "seg.pt.log.jsonl").read_text().splitlines() if line]
    assert len(log) == 2
    (tmp_path / "seg2.pt.partial").write_bytes(b"\x80garbage")
    with pytest.raises(UserError, match="damaged"):
        seg_train.train_segmenter(data, tmp_path / "seg2.pt", resume=True, **_kwargs(tmp_path))


def test_checkpoint_metadata_and_mismatch_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _tiny_ab(data)
    out = seg_train.train_segmenter(data, tmp_path / "seg.pt", **_kwargs(tmp_path))
    model, meta = seg.load_segmenter(out, "cpu")
    assert meta["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert meta["arch"] == "unet" and meta["encoder"] == "resnet18" and meta["input_size"] == 64
    assert meta["classes"] == list(TRAIN_CLASSES) and meta["epochs"] == 2
    assert meta["trained_on"]["images"] == 8 and meta["trained_on"]["layout"] == "ab"
    assert meta["recipe"]["crop"] == 32 and len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert set(meta["val"]) >= {"pixel_accuracy", "class_accuracy", "class_iou"} and meta["val"]["images"] == 4
    assert not model.training
    with pytest.raises(UserError, match="classes"):
        seg.load_segmenter(out, "cpu", classes=["wall", "door", "window"])
    with pytest.raises(UserError, match="--size 128"):
        seg.load_segmenter(out, "cpu", input_size=128)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="segmenter"):
        seg.load_segmenter(tmp_path / "junk.pt", "cpu")

    shipped = seg.export_safetensors(out, tmp_path / "seg.safetensors")
    again = seg.export_safetensors(out, tmp_path / "again.safetensors")
    assert shipped.read_bytes() == again.read_bytes()                # the same export, the same sha256
    from safetensors import safe_open

    with safe_open(str(shipped), framework="pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} >= {torch.float16}
        assert torch.float32 not in {fh.get_tensor(k).dtype for k in fh.keys()}
    half, half_meta = seg.load_segmenter(shipped, "cpu")
    assert half_meta["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert half_meta["val"] == meta["val"] and half_meta["weights_dtype"] == "float16"
    photos = torch.stack([seg_data.read_photo(p) for p in seg_data.split_pairs(data, "val")])
    agree = (seg.predict(model, meta, photos) == seg.predict(half, half_meta, photos)).float().mean()
    assert float(agree) > 0.99
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(UserError, match="segmenter"):
        seg.load_segmenter(tmp_path / "junk.safetensors", "cpu")


@pytest.mark.slow
def test_segmenter_learns_beyond_the_majority_class(synth_small: Path, tmp_path: Path) -> None:
    """On held-out synthetic scenes a few epochs beat the constant predictor of the most frequent class."""
    out = seg_train.train_segmenter(synth_small, tmp_path / "seg.pt", **_kwargs(tmp_path, epochs=15, crop=None, lr=3e-3,
                                                                                 balance=0.0, rare_crop=0.0))
    model, meta = seg.load_segmenter(out, "cpu")
    pairs = seg_data.split_pairs(synth_small, "val")
    photos = torch.stack([seg_data.read_photo(p) for p in pairs])
    labels = torch.stack([seg_data.read_label(p) for p in pairs]).long()
    valid = labels != 255
    majority = torch.bincount(torch.stack([seg_data.read_label(p) for p in seg_data.split_pairs(synth_small, "train")])
                              .flatten().long(), minlength=256)[:19].argmax()
    baseline = float((labels[valid] == majority).float().mean())
    accuracy = float((seg.predict(model, meta, photos)[valid] == labels[valid]).float().mean())
    print(f"learned {accuracy:.3f} vs majority class {baseline:.3f}")
    assert accuracy > baseline + 0.1, (accuracy, baseline)
