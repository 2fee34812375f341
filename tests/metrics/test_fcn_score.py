"""FCN-score core against independent references: the pix2pix evaluation script's own formulas
(scripts/eval_cityscapes/util.py, its two formulas re-implemented below), cityscapesscripts' evaluation
functions, and hand-computed matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from p2p_eval.metrics.bootstrap import bootstrap_ci, paired_bootstrap, per_class_ci
from p2p_eval.confusion import ConfusionMatrix, confusion_matrices, scores_from_confusion


# --- reference: phillipi/pix2pix scripts/eval_cityscapes/util.py --------------------------------
def fast_hist(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    k = np.where((a >= 0) & (a < n))[0]
    bc = np.bincount(n * a[k].astype(int) + b[k], minlength=n ** 2)
    return bc.reshape(n, n)


def get_scores(hist: np.ndarray) -> tuple[float, float, float]:
    acc = np.diag(hist).sum() / (hist.sum() + 1e-12)
    cl_acc = np.diag(hist) / (hist.sum(1) + 1e-12)
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist) + 1e-12)
    return acc, np.nanmean(cl_acc), np.nanmean(iu)
# -------------------------------------------------------------------------------------------------


NAMES3 = ["a", "b", "c"]


def test_hand_built_matrix_with_an_empty_class() -> None:
    conf = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])  # class c: absent from labels and predictions
    s = scores_from_confusion(conf, NAMES3)
    assert s["pixel_accuracy"] == pytest.approx(8 / 11)
    assert s["class_accuracy"] == pytest.approx((5 / 6 + 3 / 5) / 2)
    assert s["class_iou"] == pytest.approx((5 / 8 + 3 / 6) / 2)
    assert s["per_class"]["c"] == {"accuracy": None, "iou": None, "pixels": 0}
    assert s["per_class"]["a"] == {"accuracy": pytest.approx(5 / 6), "iou": pytest.approx(5 / 8), "pixels": 6}
    o = scores_from_confusion(conf, NAMES3, convention="original")
    assert o["class_accuracy"] == pytest.approx((5 / 6 + 3 / 5 + 0) / 3)
    assert o["class_iou"] == pytest.approx((5 / 8 + 3 / 6 + 0) / 3)
    ref = get_scores(conf)
    assert (o["pixel_accuracy"], o["class_accuracy"], o["class_iou"]) == pytest.approx(ref)


def test_class_predicted_but_absent_from_labels() -> None:
    conf = np.array([[4, 1], [0, 0]])
    s = scores_from_confusion(conf, ["x", "y"])
    assert s["per_class"]["y"]["accuracy"] is None          # no label pixels: accuracy undefined
    assert s["per_class"]["y"]["iou"] == 0.0                # but a false positive: IoU 0 (as Cityscapes)
    assert s["class_accuracy"] == pytest.approx(4 / 5)
    assert s["class_iou"] == pytest.approx((4 / 5 + 0) / 2)


def test_all_void_images() -> None:
    cm = ConfusionMatrix(3, class_names=NAMES3, per_image=True)
    cm.update(torch.randint(0, 3, (2, 8, 8)), torch.full((2, 8, 8), 255))
    s = cm.compute()
    assert int(cm.total.sum()) == 0
    assert s["pixel_accuracy"] is None and s["class_accuracy"] is None and s["class_iou"] is None
    o = cm.compute("original")
    assert (o["pixel_accuracy"], o["class_accuracy"], o["class_iou"]) == (0.0, 0.0, 0.0)
    assert bootstrap_ci(cm.per_image_array(), n=20) == {k: [None, None] for k in ("pixel_accuracy", "class_accuracy", "class_iou")}


def test_matches_pix2pix_fast_hist_and_get_scores_with_merge() -> None:
    g = torch.Generator().manual_seed(1)
    k = 19
    labels = torch.randint(0, k, (6, 32, 32), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.2] = 255
    labels[labels == 7] = 3                                   # class 7 absent from labels
    preds = torch.where(torch.rand(labels.shape, generator=g) < 0.6, labels.clamp(max=k - 1),
                        torch.randint(0, k, labels.shape, generator=g))
    ref = sum(fast_hist(l.flatten().numpy(), p.flatten().numpy(), k) for l, p in zip(labels, preds))
    a, b = ConfusionMatrix(k, per_image=True), ConfusionMatrix(k, per_image=True)
    a.update(preds[:4], labels[:4])
    for i in range(4, 6):
        b.update(preds[i], labels[i])
    merged = a.merge(b)
    np.testing.assert_array_equal(merged.total.numpy(), ref)
    np.testing.assert_array_equal(merged.per_image_array().sum(0), ref)
    assert merged.per_image_array().shape == (6, k, k)
    o = merged.compute("original")
    assert (o["pixel_accuracy"], o["class_accuracy"], o["class_iou"]) == pytest.approx(get_scores(ref))


def test_confusion_matrices_rejects_out_of_range_predictions() -> None:
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrices(torch.tensor([[19]]), torch.tensor([[0]]), 19)
    ok = confusion_matrices(torch.tensor([[19]]), torch.tensor([[255]]), 19)  # void label: not counted
    assert int(ok.sum()) == 0


def test_against_cityscapesscripts(tmp_path, monkeypatch) -> None:
    """Per-class IoU, mean IoU and per-class accuracy equal cityscapesscripts' on the same predictions."""
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path))
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
    from cityscapesscripts.helpers.labels import id2label, labels as cs_labels

    args = cs.args
    monkeypatch.setattr(args, "evalInstLevelScore", False)
    monkeypatch.setattr(args, "evalPixelAccuracy", False)
    monkeypatch.setattr(args, "quiet", True)
    rng = np.random.default_rng(0)
    all_ids = [lab.id for lab in cs_labels if lab.id >= 0]
    train_ids = [lab.id for lab in cs_labels if 0 <= lab.trainId < 255 and lab.name != "train"]  # 'train' absent
    conf_cs = cs.generateMatrix(args)
    ours = ConfusionMatrix(19)
    to_train = np.full(256, 255, dtype=np.int64)
    for lab in cs_labels:
        if lab.id >= 0 and 0 <= lab.trainId < 255:
            to_train[lab.id] = lab.trainId
    for i in range(3):
        gt = rng.choice([x for x in all_ids if id2label[x].name != "train"], size=(40, 60)).astype(np.uint8)
        pred = np.where(rng.random(gt.shape) < 0.5, gt, rng.choice(train_ids, size=gt.shape)).astype(np.uint8)
        pred = np.where(np.isin(pred, train_ids), pred, rng.choice(train_ids, size=gt.shape)).astype(np.uint8)
        pred_file, gt_file = tmp_path / f"pred{i}.png", tmp_path / f"gt{i}_gtFine_labelIds.png"
        Image.fromarray(pred).save(pred_file)
        Image.fromarray(gt).save(gt_file)
        cs.evaluatePair(str(pred_file), str(gt_file), conf_cs, {}, {}, args)
        ours.update(torch.from_numpy(to_train[pred]), torch.from_numpy(to_train[gt]))
    s = ours.compute()
    by_train = {lab.trainId: lab for lab in cs_labels if 0 <= lab.trainId < 255 and lab.id >= 0}
    class_iou = {}
    for tid in range(19):
        lab = by_train[tid]
        ref_iou = cs.getIouScoreForLabel(lab.id, conf_cs, args)
        class_iou[lab.name] = ref_iou
        got = s["per_class"][lab.name]["iou"]
        if math.isnan(ref_iou):
            assert got is None, lab.name
        else:
            assert got == pytest.approx(ref_iou), lab.name
        acc_ref = cs.getMatrixFieldValue(conf_cs, lab.id, lab.id, args)  # normalized: diag / row sum
        got_acc = s["per_class"][lab.name]["accuracy"]
        assert (got_acc is None) if math.isnan(acc_ref) else got_acc == pytest.approx(acc_ref), lab.name
    assert s["per_class"]["train"]["iou"] is None
    assert s["class_iou"] == pytest.approx(cs.getScoreAverage(class_iou, args))


def _naive_ci(per_image: np.ndarray, n: int, seed: int) -> dict[str, list[float]]:
    """Loop reference of the percentile bootstrap: the same index draws, scored one replicate at a time."""
    idx = np.random.Generator(np.random.PCG64(seed)).integers(0, per_image.shape[0], size=(n, per_image.shape[0]))
    reps = {"pixel_accuracy": [], "class_accuracy": [], "class_iou": []}
    for row in idx:
        s = scores_from_confusion(per_image[row].sum(0), [str(i) for i in range(per_image.shape[1])])
        for key in reps:
            reps[key].append(s[key])
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in reps.items()}


def _random_per_image(seed: int, n_images: int = 30, k: int = 5, quality: float = 0.7) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n_images, 16, 16), generator=g)
    preds = torch.where(torch.rand(labels.shape, generator=g) < quality, labels, torch.randint(0, k, labels.shape, generator=g))
    return confusion_matrices(preds, labels, k).numpy()


def test_bootstrap_matches_loop_and_is_reproducible() -> None:
    per_image = _random_per_image(0)
    ci = bootstrap_ci(per_image, n=200, seed=3)
    ref = _naive_ci(per_image, 200, 3)
    for key in ref:
        assert ci[key] == pytest.approx(ref[key])
    assert bootstrap_ci(per_image, n=200, seed=3) == ci
    assert bootstrap_ci(per_image, n=200, seed=4) != ci
    full = scores_from_confusion(per_image.sum(0), list("abcde"))
    for key in ref:
        assert ci[key][0] < full[key] < ci[key][1]


def test_paired_bootstrap() -> None:
    a = _random_per_image(0, quality=0.9)
    same = paired_bootstrap(a, a, n=200, seed=0)
    assert same["class_iou"] == {"difference": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0}
    b = _random_per_image(0, quality=0.5)  # same labels (same seed), worse predictions
    diff = paired_bootstrap(a, b, n=200, seed=0)
    for key in ("pixel_accuracy", "class_accuracy", "class_iou"):
        assert diff[key]["difference"] > 0
        assert diff[key]["ci95"][0] > 0
        assert diff[key]["p_value"] == pytest.approx(2 / 201)  # no replicate <= 0: the smallest p


def test_per_class_intervals_match_a_loop() -> None:
    per_image = _random_per_image(1)
    got = per_class_ci(per_image, n=200, seed=5)
    idx = np.random.Generator(np.random.PCG64(5)).integers(0, per_image.shape[0], size=(200, per_image.shape[0]))
    names = list("abcde")
    for k, name in enumerate(names):
        ious = [scores_from_confusion(per_image[row].sum(0), names)["per_class"][name]["iou"] for row in idx]
        accs = [scores_from_confusion(per_image[row].sum(0), names)["per_class"][name]["accuracy"] for row in idx]
        assert got["iou"][k] == pytest.approx([np.percentile(ious, 2.5), np.percentile(ious, 97.5)])
        assert got["accuracy"][k] == pytest.approx([np.percentile(accs, 2.5), np.percentile(accs, 97.5)])


def test_paired_per_class_differences_match_a_loop() -> None:
    a, b = _random_per_image(2, quality=0.8), _random_per_image(2, quality=0.6)
    got = paired_bootstrap(a, b, n=100, seed=7, per_class=True)["per_class"]
    idx = np.random.Generator(np.random.PCG64(7)).integers(0, a.shape[0], size=(100, a.shape[0]))
    names = list("abcde")
    for k, name in enumerate(names):
        diffs = [scores_from_confusion(a[row].sum(0), names)["per_class"][name]["iou"]
                 - scores_from_confusion(b[row].sum(0), names)["per_class"][name]["iou"] for row in idx]
        full = (scores_from_confusion(a.sum(0), names)["per_class"][name]["iou"]
                - scores_from_confusion(b.sum(0), names)["per_class"][name]["iou"])
        assert got["iou"][k]["difference"] == pytest.approx(full)
        assert got["iou"][k]["ci95"] == pytest.approx([np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)])
        below, above = sum(d <= 0 for d in diffs), sum(d >= 0 for d in diffs)
        assert got["iou"][k]["p_value"] == pytest.approx(min(1.0, 2 * (min(below, above) + 1) / 101))


def test_paired_bootstrap_without_replicates_keeps_the_difference() -> None:
    a, b = _random_per_image(0, quality=0.9), _random_per_image(0, quality=0.5)
    got = paired_bootstrap(a, b, n=0)
    ref = (scores_from_confusion(a.sum(0), list("abcde"))["pixel_accuracy"]
           - scores_from_confusion(b.sum(0), list("abcde"))["pixel_accuracy"])
    assert got["pixel_accuracy"] == {"difference": pytest.approx(ref), "ci95": [None, None], "p_value": None}
