"""Confusion matrices and the scores computed from them: a leaf (it imports no metric and no model) below
both the FCN-score (:mod:`p2p_eval.metrics`) and the segmenter's trainer (:mod:`p2p_eval.segmentation.train`,
which scores its validation frames with it).

References matched:

- pix2pix ``scripts/eval_cityscapes/util.py``: ``fast_hist`` (one confusion matrix over the whole set,
  rows = ground truth, columns = prediction, labels outside ``[0, K)`` ignored) and ``get_scores``
  (pixel accuracy = trace / total; per-class accuracy = diag / row sum; IoU = diag / (row + column -
  diag), each with ``+ 1e-12``, so a class absent from labels and predictions counts 0 in the means).
  That is ``convention="original"``.
- cityscapesscripts ``evaluation/evalPixelLevelSemanticLabeling.py``: ``getIouScoreForLabel`` (NaN when
  tp + fp + fn = 0) and ``getScoreAverage`` (mean over non-NaN classes); ``getMatrixFieldValue`` with
  ``normalized`` (diag / row sum, NaN for an empty row) for per-class accuracy.  That is the default
  ``convention="nanmean"``: class accuracy is averaged over classes present in the labels, IoU over
  classes present in the labels or the predictions.  On the full Cityscapes val set every class is
  present and both conventions agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from p2p_eval.data.cityscapes import TRAIN_CLASSES

CONVENTIONS = ("nanmean", "original")
_EPS = 1e-12


def confusion_matrices(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 19,
                       ignore_index: int = 255) -> torch.Tensor:
    """Per-image confusion matrices (B, K, K), int64, rows = label, columns = prediction.

    ``pred`` and ``target`` are integer tensors of shape (H, W) or (B, H, W) on the same device.
    Label pixels equal to ``ignore_index`` (or outside ``[0, K)``, as in pix2pix's ``fast_hist``) are
    skipped; a prediction outside ``[0, K)`` on a counted pixel is a ValueError.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}")
    if pred.ndim == 2:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    if pred.ndim != 3:
        raise ValueError(f"expected (H, W) or (B, H, W) label maps, got shape {tuple(pred.shape)}")
    k = num_classes
    batch = pred.shape[0]
    target = target.long()
    pred = pred.long()
    valid = (target >= 0) & (target < k) & (target != ignore_index)
    bad = valid & ((pred < 0) | (pred >= k))
    if bool(bad.any()):
        raise ValueError(f"predictions must be class ids in [0, {k}); found {int(pred[bad][0])}")
    image = torch.arange(batch, device=pred.device).view(batch, 1, 1).expand_as(pred)
    index = (image * k + target) * k + pred
    counts = torch.bincount(index[valid], minlength=batch * k * k)
    return counts.view(batch, k, k)


class ConfusionMatrix:
    """Accumulator of one confusion matrix over a whole set (the pix2pix / Cityscapes protocol).

    ``update(pred, target)`` adds a batch on the tensors' device; ``merge(other)`` adds another
    accumulator's counts (other batches, processes or shards); ``compute()`` returns
    :func:`scores_from_confusion` of the total.  With ``per_image=True`` it also keeps one matrix per
    image (on the CPU) for :mod:`p2p_eval.metrics.bootstrap`.
    """

    higher_is_better = True

    def __init__(self, num_classes: int = 19, ignore_index: int = 255, device: torch.device | str | None = None,
                 per_image: bool = False, class_names: Sequence[str] | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.per_image = per_image
        self.class_names = list(class_names) if class_names is not None else None
        self.total = torch.zeros(num_classes, num_classes, dtype=torch.long,
                                 device=torch.device(device) if device is not None else None)
        self.images: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Add predictions and labels ((H, W) or (B, H, W)); returns the batch's per-image matrices."""
        mats = confusion_matrices(pred.to(self.total.device), target.to(self.total.device),
                                  self.num_classes, self.ignore_index)
        self.total += mats.sum(0)
        if self.per_image:
            self.images.extend(mats.cpu().unbind(0))
        return mats

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts (and per-image matrices) into this accumulator; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class into {self.num_classes}-class matrix")
        self.total += other.total.to(self.total.device)
        self.images.extend(other.images)
        return self

    def per_image_array(self) -> np.ndarray:
        """The per-image matrices as an (N, K, K) int64 array (needs ``per_image=True``)."""
        if not self.per_image:
            raise ValueError("per-image matrices were not kept; build the ConfusionMatrix with per_image=True")
        if not self.images:
            return np.zeros((0, self.num_classes, self.num_classes), dtype=np.int64)
        return torch.stack(self.images).numpy()

    def compute(self, convention: str = "nanmean") -> dict:
        """Scores of the accumulated matrix (see :func:`scores_from_confusion`)."""
        return scores_from_confusion(self.total.cpu().numpy(), self.class_names, convention)


def score_arrays(conf: np.ndarray, convention: str = "nanmean") -> dict[str, np.ndarray]:
    """Vectorised scores of one or many matrices (..., K, K): pixel/class accuracy, IoU and per-class arrays."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    conf = np.asarray(conf, dtype=np.float64)
    diag = np.diagonal(conf, axis1=-2, axis2=-1)
    rows = conf.sum(-1)
    cols = conf.sum(-2)
    union = rows + cols - diag
    total = rows.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if convention == "original":
            pixel = diag.sum(-1) / (total + _EPS)
            acc = diag / (rows + _EPS)
            iou = diag / (union + _EPS)
            class_acc, class_iou = acc.mean(-1), iou.mean(-1)
        else:
            pixel = np.where(total > 0, diag.sum(-1) / np.where(total > 0, total, 1), np.nan)
            acc = np.where(rows > 0, diag / np.where(rows > 0, rows, 1), np.nan)
            iou = np.where(union > 0, diag / np.where(union > 0, union, 1), np.nan)
            class_acc, class_iou = nanmean(acc), nanmean(iou)
    return {"pixel_accuracy": pixel, "class_accuracy": class_acc, "class_iou": class_iou,
            "accuracy": acc, "iou": iou, "pixels": rows}


def nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (no warning) where every entry is NaN."""
    present = ~np.isnan(values)
    count = present.sum(-1)
    total = np.where(present, values, 0.0).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def scores_from_confusion(conf: np.ndarray | torch.Tensor, class_names: Sequence[str] | None = None,
                          convention: str = "nanmean") -> dict:
    """Pixel accuracy, mean class accuracy, mean class IoU and the per-class table of one (K, K) matrix.

    Undefined values are ``None`` (JSON null): a class absent from the labels has no accuracy, a class
    absent from labels and predictions has no IoU (``nanmean``); an all-void set has no pixel accuracy.
    """
    if isinstance(conf, torch.Tensor):
        conf = conf.cpu().numpy()
    conf = np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"expected a square (K, K) confusion matrix, got shape {conf.shape}")
    k = conf.shape[0]
    names = list(class_names) if class_names is not None else _default_names(k)
    s = score_arrays(conf, convention)
    per_class = {name: {"accuracy": _num(s["accuracy"][i]), "iou": _num(s["iou"][i]), "pixels": int(s["pixels"][i])}
                 for i, name in enumerate(names)}
    return {"pixel_accuracy": _num(s["pixel_accuracy"]), "class_accuracy": _num(s["class_accuracy"]),
            "class_iou": _num(s["class_iou"]), "per_class": per_class, "convention": convention}


def _default_names(k: int) -> list[str]:
    if k == 19:
        return list(TRAIN_CLASSES)
    return [str(i) for i in range(k)]


def _num(x: float | np.floating) -> float | None:
    """A float for JSON, ``None`` for NaN."""
    x = float(x)
    return None if math.isnan(x) else x
