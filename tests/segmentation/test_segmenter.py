"""Segmenter: building, local encoder weights, data layouts, augmentation geometry, one-file checkpoints,
resume and the errors for a checkpoint made for other classes or another input size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p2p_eval.data.cityscapes import PALETTE, TRAIN_CLASSES
from p2p_eval.errors import UserError
from p2p_eval.metrics import segmenter as seg


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
    pairs = seg.split_pairs(tmp_path, "val")
    assert [p.name for p in pairs] == ["1", "2", "3", "4"]
    for pair in pairs:
        ids = seg.read_label(pair).numpy()
        np.testing.assert_array_equal(ids, truth[("val", pair.name)])
        assert tuple(seg.read_photo(pair).shape) == (3, 64, 64)
        small = seg.read_label(pair, 32).numpy()
        np.testing.assert_array_equal(small, truth[("val", pair.name)][1::2, 1::2])  # nearest: every other pixel


@pytest.mark.realdata
def test_official_layout(shared_data: Path) -> None:
    from cityscapesscripts.helpers.labels import labels as cs_labels

    root = shared_data / "cityscapes_official_sample"
    pairs = seg.split_pairs(root, "train")
    assert len(pairs) == 8 and all(p.name.startswith("aachen_") for p in pairs)
    lut = np.full(256, 255, dtype=np.uint8)
    for lab in cs_labels:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            lut[lab.id] = lab.trainId
    ref = lut[np.array(Image.open(pairs[0].label))]
    np.testing.assert_array_equal(seg.read_label(pairs[0]).numpy(), ref)


def test_augmentation_keeps_photo_and_labels_aligned() -> None:
    torch.manual_seed(0)
    ids = torch.zeros(96, 96, dtype=torch.uint8)
    ids[:, 40:] = 10
    photo = torch.where(ids == 10, 230, 20).to(torch.uint8).expand(3, 96, 96).clone()
    for _ in range(20):
        p, lab = seg._augment(photo, ids, 64)
        assert p.shape == (3, 64, 64) and lab.shape == (64, 64)
        assert set(torch.unique(lab).tolist()) <= {0, 10}
        gray = p.float().mean(0)
        if (lab == 0).any() and (lab == 10).any():
            assert gray[lab == 0].mean() + 80 < gray[lab == 10].mean()


def test_train_resume_checkpoint_and_mismatch_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import p2p_eval.fsutil as fsutil

    data = tmp_path / "data"
    _tiny_ab(data)
    out = tmp_path / "seg.pt"
    real_save = fsutil.atomic_torch_save
    calls = []

    def interrupted_save(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing epoch 2
        return real_save(obj, path)

    monkeypatch.setattr(fsutil, "atomic_torch_save", interrupted_save)
    kwargs = dict(epochs=2, size=64, device="cpu", batch_size=4, num_workers=0, progress=False)
    with pytest.raises(KeyboardInterrupt):
        seg.train_segmenter(data, out, **kwargs)
    partial = tmp_path / "seg.pt.partial"
    assert partial.is_file() and not out.exists()
    with pytest.raises(UserError, match="unfinished"):
        seg.load_segmenter(partial, "cpu")
    with pytest.raises(UserError, match="other settings"):
        seg.train_segmenter(data, out, resume=True, **{**kwargs, "batch_size": 2})
    monkeypatch.setattr(fsutil, "atomic_torch_save", real_save)
    assert seg.train_segmenter(data, out, resume=True, **kwargs) == out
    assert not partial.exists()

    model, meta = seg.load_segmenter(out, "cpu")
    assert meta["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert meta["arch"] == "unet" and meta["encoder"] == "resnet18" and meta["input_size"] == 64
    assert meta["classes"] == list(TRAIN_CLASSES) and meta["epochs"] == 2
    assert meta["trained_on"]["images"] == 8 and meta["trained_on"]["layout"] == "ab"
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert set(meta["val"]) >= {"pixel_accuracy", "class_accuracy", "class_iou"} and meta["val"]["images"] == 4
    assert not model.training

    with pytest.raises(UserError, match="classes"):
        seg.load_segmenter(out, "cpu", classes=["wall", "door", "window"])
    with pytest.raises(UserError, match="--size 128"):
        seg.load_segmenter(out, "cpu", input_size=128)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="segmenter"):
        seg.load_segmenter(tmp_path / "junk.pt", "cpu")
