"""Decoding generated colour label maps (pix2pix Table 6) against hand-made maps: exact palette colours,
JPEG-like noise, far-off colours -> void; scores against hand counts and the FCN-score's scorer."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from p2p_eval.data.cityscapes import IGNORE, NUM_CLASSES, PALETTE, VOID_COLORS, colors_to_trainids, trainids_to_colors
from p2p_eval.metrics.bootstrap import bootstrap_ci
from p2p_eval.confusion import confusion_matrices, scores_from_confusion
from p2p_eval.metrics.labelmap import FAR_DISTANCE, LabelMapScore, decode_label_map


def _blocks(seed: int, size: int = 64, block: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, NUM_CLASSES, size=(size // block, size // block)).astype(np.uint8)
    return np.kron(ids, np.ones((block, block), dtype=np.uint8))


def _jpeg(rgb: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_exact_palette_colours_decode_to_their_ids() -> None:
    rgb = np.concatenate([PALETTE, VOID_COLORS])[None]  # one pixel per palette colour
    dec = decode_label_map(rgb)
    assert dec.ids[0].tolist() == list(range(NUM_CLASSES)) + [IGNORE] * len(VOID_COLORS)
    assert not dec.far.any() and float(dec.distance.max()) == 0.0 and dec.far_share == 0.0
    ids = _blocks(0)
    assert np.array_equal(decode_label_map(trainids_to_colors(ids)).ids, ids)


def test_jpeg_noise_decodes_like_the_data_module_and_mostly_right() -> None:
    ids = _blocks(1)
    noisy = _jpeg(trainids_to_colors(ids))
    dec = decode_label_map(noisy)
    assert np.array_equal(dec.ids, colors_to_trainids(noisy))  # same palette, order and ties
    assert (dec.ids == ids).mean() > 0.9
    assert 0 < dec.far_share < 0.1
    # the distance is the brute-force nearest palette distance
    palette = np.concatenate([PALETTE, VOID_COLORS]).astype(np.float64)
    ref = np.sqrt(((noisy.reshape(-1, 1, 3).astype(np.float64) - palette[None]) ** 2).sum(-1).min(1))
    assert np.allclose(dec.distance.reshape(-1), ref, atol=1e-3)


def test_far_off_colours_are_flagged_and_void_on_request() -> None:
    ids = _blocks(2, size=16, block=4)
    rgb = trainids_to_colors(ids).copy()
    rgb[:4, :4] = (0, 255, 0)  # pure green: far from every Cityscapes colour
    rgb[4:8, :4] = (130, 66, 126)  # road (128, 64, 128) plus a little noise: near
    palette = np.concatenate([PALETTE, VOID_COLORS]).astype(np.float64)
    assert np.sqrt(((palette - (0, 255, 0)) ** 2).sum(1)).min() > FAR_DISTANCE
    kept = decode_label_map(rgb)
    assert kept.far[:4, :4].all() and kept.far.sum() == 16 and kept.far_share == pytest.approx(16 / 256)
    assert (kept.ids[:4, :4] != IGNORE).all()  # decoded (nearest colour) but doubtful
    void = decode_label_map(rgb, far="void")
    assert (void.ids[:4, :4] == IGNORE).all() and (void.ids[4:8, :4] == 0).all()
    assert np.array_equal(void.ids[4:], kept.ids[4:])


def test_scores_by_hand_and_void_counts_as_a_miss() -> None:
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, IGNORE, IGNORE], [2, 2, IGNORE, IGNORE]], dtype=np.uint8)
    pred = target.copy()
    pred[0, 0] = 1  # a road pixel called sidewalk
    pred[3, 3] = 0  # a void label: ignored whatever is predicted
    rgb = trainids_to_colors(pred).copy()
    rgb[2, 0] = (0, 255, 0)  # a building pixel far from every colour
    acc = LabelMapScore(far="void")
    acc.update(rgb, target)
    got = acc.compute(bootstrap=0)
    # 12 labelled pixels, 10 right (one road -> sidewalk, one building -> void)
    assert got["pixel_accuracy"] == pytest.approx(10 / 12)
    assert got["class_accuracy"] == pytest.approx((3 / 4 + 4 / 4 + 3 / 4) / 3)
    # IoU: road 3 / (4 + 3 - 3), sidewalk 4 / (4 + 5 - 4), building 3 / (4 + 3 - 3); void is no class
    assert got["class_iou"] == pytest.approx((3 / 4 + 4 / 5 + 3 / 4) / 3)
    assert got["void_predicted_pixels"] == 1 and got["far_share"] == pytest.approx(1 / 16)
    decode = LabelMapScore(far="decode")
    decode.update(rgb, target)
    assert decode.compute(bootstrap=0)["void_predicted_pixels"] == 0


def test_decode_mode_equals_the_fcn_scorer_with_cis() -> None:
    import torch

    acc = LabelMapScore()
    mats = []
    for seed in range(6):
        target = _blocks(10 + seed, size=32, block=4)
        target[:4] = IGNORE
        noisy = _jpeg(trainids_to_colors(np.where(np.arange(32)[:, None] < 16, _blocks(20 + seed, 32, 4), target)))
        target[colors_to_trainids(noisy) == IGNORE] = IGNORE  # void predicted only where the label is void
        acc.update(noisy, target)
        mats.append(confusion_matrices(torch.from_numpy(colors_to_trainids(noisy).astype(np.int64)),
                                       torch.from_numpy(target.astype(np.int64)))[0].numpy())
    got = acc.compute(bootstrap=200, seed=3)
    ref = scores_from_confusion(np.sum(mats, 0))
    ci = bootstrap_ci(np.stack(mats), n=200, seed=3)
    for name in ("pixel_accuracy", "class_accuracy", "class_iou"):
        assert got[name] == pytest.approx(ref[name])
        assert got["ci95"][name] == pytest.approx(ci[name])


@pytest.mark.realdata
def test_palette_share_tells_cityscapes_from_facades(shared_data) -> None:
    from p2p_eval.metrics.labelmap import palette_share

    assert palette_share(shared_data / "cityscapes") > 0.9  # JPEG colours near the palette
    assert palette_share(shared_data / "facades") < 0.4  # CMP Facades' own colours
