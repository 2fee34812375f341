"""Generated colour label maps -> train ids -> the FCN-score's scores: pix2pix Table 6 (section 4.6, photo -> labels).

Reference: Isola et al., CVPR 2017, section 4.6 "Semantic segmentation" and Table 6: a generator trained on
Cityscapes photo -> labels outputs colour label maps; its per-pixel accuracy, per-class accuracy and class IoU
against the true labels (L1 .86 / .42 / .35, cGAN .74 / .28 / .22, L1+cGAN .83 / .36 / .29). No segmenter is
involved: the output *is* the segmentation, read back by colour.

Decoding (:func:`decode_label_map`): every generated pixel takes the train id of the nearest colour (Euclidean RGB
distance) among the Cityscapes train-class palette and the void colours of :mod:`p2p_eval.data.cityscapes`
(``PALETTE`` then ``VOID_COLORS``, void -> 255), the table and order of
:func:`p2p_eval.data.cityscapes.colors_to_trainids`, whose result it reproduces exactly (tested). A pixel farther
than :data:`FAR_DISTANCE` (50 RGB units) from every palette colour is *far*: decoded but doubtful. Its share is
reported with every score. ``far="decode"`` (the default, what the reports use) keeps its nearest colour's
class; ``far="void"`` marks it void (255), which then counts as a miss on a labelled pixel (never as a hit and
never ignored). For scale: JPEG compression alone puts 3.3% of the pixels of the true colour maps of
pix2pix's Cityscapes val set beyond 50 units (26% beyond 10; 1.6% beyond 60; the closest two palette colours
are 20 apart); measured on 20 val frames.

Scoring (:class:`LabelMapScore`, :func:`score_label_folder`): the decoded ids are resized (nearest neighbour) to
the true label map's size and added to per-image confusion matrices
(:func:`p2p_eval.confusion.confusion_matrices`, rows = labels, void labels ignored) with one extra
column for void predictions, and scored with :func:`p2p_eval.confusion.score_arrays` exactly as the
FCN-score is (one matrix over the set, class means over the 19 train classes); 95% intervals are the
FCN-score's percentile bootstrap over images (:mod:`p2p_eval.metrics.bootstrap`, same resamples for the same
seed). With ``far="decode"`` a pixel is predicted void only when its nearest colour is a void colour (black,
...); where that happens only on void labels, the scores equal ``scores_from_confusion`` and ``bootstrap_ci`` of
the 19x19 matrices (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from p2p_eval.data.aligned import ab_half
from p2p_eval.data.cityscapes import (IGNORE, as_hwc, NUM_CLASSES, PALETTE, TRAIN_CLASSES, VOID_COLORS, ab_frames,
                                      resize_nearest, split_labels, trainids_to_colors)
from p2p_eval.errors import UserError, require_dir
from p2p_eval.imageio import list_images, read_image
from p2p_eval.metrics.bootstrap import percentile_interval, resample_counts, resampled_sums
from p2p_eval.confusion import confusion_matrices, nanmean, score_arrays

#: RGB distance beyond which a generated pixel is "far" from every palette colour (decoded but doubtful).
FAR_DISTANCE = 50.0
FAR_MODES = ("decode", "void")
SCORES = ("pixel_accuracy", "class_accuracy", "class_iou")
higher_is_better = True

_COLORS = np.concatenate([PALETTE, VOID_COLORS]).astype(np.float32)
_IDS = np.concatenate([np.arange(NUM_CLASSES), np.full(len(VOID_COLORS), IGNORE)]).astype(np.uint8)


@dataclass(frozen=True)
class Decoded:
    """A decoded label map: train ids (HxW uint8, 255 void), each pixel's distance to its nearest palette
    colour (HxW float32) and the far mask (distance > threshold)."""
    ids: np.ndarray
    distance: np.ndarray
    far: np.ndarray

    @property
    def far_share(self) -> float:
        return float(self.far.mean()) if self.far.size else 0.0


def decode_label_map(rgb: np.ndarray | torch.Tensor, far_distance: float = FAR_DISTANCE,
                     far: str = "decode") -> Decoded:
    """Colour label map (HxWx3 uint8 array or (3, H, W) uint8 tensor) -> :class:`Decoded` by nearest palette colour.

    ``far="void"`` sets pixels farther than ``far_distance`` from every palette colour to 255.
    """
    if far not in FAR_MODES:
        raise UserError(f"unknown far-pixel mode {far!r}; valid: {', '.join(FAR_MODES)}")
    img = as_hwc(rgb)
    h, w = img.shape[:2]
    flat = img.reshape(-1, 3).astype(np.int32)
    codes = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    uniq, inverse = np.unique(codes, return_inverse=True)  # few distinct colours, even after JPEG
    colors = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=1).astype(np.float32)
    # exact integer squared distances in float32 (all < 2^24); ties go to the lower index (train classes first)
    d2 = ((colors[:, None, :] - _COLORS[None, :, :]) ** 2).sum(-1)
    nearest = np.argmin(d2, axis=1)
    dist = np.sqrt(d2[np.arange(len(uniq)), nearest]).astype(np.float32)
    ids = _IDS[nearest][inverse.reshape(-1)].reshape(h, w)
    distance = dist[inverse.reshape(-1)].reshape(h, w)
    far_mask = distance > far_distance
    if far == "void":
        ids = np.where(far_mask, np.uint8(IGNORE), ids)
    return Decoded(ids=ids, distance=distance, far=far_mask)


def label_confusions(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(K+1, K+1) confusion of one image: rows = true train ids (255 ignored), columns = predicted ids with void
    predictions (255) in the extra last column, so they count as misses of the labelled pixels."""
    pred = np.where(pred == IGNORE, NUM_CLASSES, pred).astype(np.int64)
    return confusion_matrices(torch.from_numpy(pred), torch.from_numpy(target.astype(np.int64)),
                              NUM_CLASSES + 1, IGNORE)[0].numpy()


def scores_of_confusions(conf: np.ndarray, convention: str = "nanmean") -> dict[str, np.ndarray]:
    """Pixel accuracy, class accuracy and class IoU of (..., K+1, K+1) matrices; class means over the K train
    classes only (the void column is a miss, never a class)."""
    s = score_arrays(conf, convention)
    acc, iou = s["accuracy"][..., :NUM_CLASSES], s["iou"][..., :NUM_CLASSES]
    if convention == "original":
        class_acc, class_iou = np.nan_to_num(acc).mean(-1), np.nan_to_num(iou).mean(-1)
    else:
        class_acc, class_iou = nanmean(acc), nanmean(iou)
    return {"pixel_accuracy": s["pixel_accuracy"], "class_accuracy": class_acc, "class_iou": class_iou,
            "accuracy": acc, "iou": iou}


def _num(x: float) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


class LabelMapScore:
    """Accumulator over a set: ``update(generated_rgb, true_ids)`` per image, ``compute()`` -> scores, 95% CIs,
    far share. ``higher_is_better`` for the three scores; the far share is lower-is-better information."""
    higher_is_better = True

    def __init__(self, far_distance: float = FAR_DISTANCE, far: str = "decode", convention: str = "nanmean") -> None:
        if far not in FAR_MODES:
            raise UserError(f"unknown far-pixel mode {far!r}; valid: {', '.join(FAR_MODES)}")
        self.far_distance, self.far, self.convention = far_distance, far, convention
        self.confusions: list[np.ndarray] = []
        self.far_pixels = 0
        self.pixels = 0

    def update(self, generated: np.ndarray | torch.Tensor, target: np.ndarray) -> np.ndarray:
        """Decode one generated colour map, resize its ids to ``target``'s size (nearest), add its confusion."""
        dec = decode_label_map(generated, self.far_distance, self.far)
        self.far_pixels += int(dec.far.sum())
        self.pixels += dec.far.size
        ids = resize_nearest(dec.ids, tuple(target.shape[:2]))
        conf = label_confusions(np.asarray(ids), np.asarray(target))
        self.confusions.append(conf)
        return conf

    def merge(self, other: LabelMapScore) -> LabelMapScore:
        self.confusions.extend(other.confusions)
        self.far_pixels += other.far_pixels
        self.pixels += other.pixels
        return self

    def compute(self, bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
        """Scores of the summed matrix, per-class table, percentile-bootstrap intervals over images, far share."""
        if not self.confusions:
            raise UserError("no label maps were scored")
        per_image = np.stack(self.confusions)
        total = per_image.sum(0)
        s = scores_of_confusions(total, self.convention)
        result: dict = {name: _num(s[name]) for name in SCORES}
        result["per_class"] = {name: {"accuracy": _num(s["accuracy"][i]), "iou": _num(s["iou"][i]),
                                      "pixels": int(total[i].sum())} for i, name in enumerate(TRAIN_CLASSES)}
        result["images"] = int(per_image.shape[0])
        result["void_predicted_pixels"] = int(total[:NUM_CLASSES, NUM_CLASSES].sum())
        if bootstrap > 0:
            counts = resample_counts(per_image.shape[0], bootstrap, seed)  # the FCN-score's resamples
            reps = scores_of_confusions(resampled_sums(per_image, counts), self.convention)
            result["ci95"] = {name: percentile_interval(reps[name], level) for name in SCORES}
        result["far_share"] = self.far_pixels / self.pixels if self.pixels else None
        result["decoding"] = {"far_distance": self.far_distance, "far": self.far, "convention": self.convention,
                              "palette": "Cityscapes train colours + void colours (p2p_eval.data.cityscapes)"}
        return result


def score_label_folder(images_dir: str | Path, data_dir: str | Path, split: str = "val",
                       far_distance: float = FAR_DISTANCE, far: str = "decode", bootstrap: int = 1000, seed: int = 0,
                       progress: bool = True) -> dict:
    """Table 6 score of a folder of generated colour label maps (``NAME.png`` for each frame NAME of DATA/SPLIT)
    against DATA's true labels (``SPLIT_labels/`` or the decoded colour B halves, at their stored size)."""
    folder = require_dir(images_dir, "generated label maps folder")
    generated = {p.stem: p for p in list_images(folder)}
    labels = split_labels(data_dir, split, progress=False)
    missing = [name for name, _ in labels if name not in generated]
    if missing:
        raise UserError(f"{folder} lacks generated label maps for {len(missing)} frames of {data_dir}/{split} "
                        f"(e.g. {missing[0]}.png); translate the whole split")
    acc = LabelMapScore(far_distance, far)
    for name, ids in tqdm(labels, desc="label maps", unit="img", leave=False, disable=None if progress else True):
        acc.update(read_image(generated[name], mode="rgb"), ids)
    result = acc.compute(bootstrap=bootstrap, seed=seed)
    result["source"] = {"images": str(images_dir), "labels": f"{data_dir}/{split}"}
    return result


def score_true_labels(data_dir: str | Path, size: int | None, split: str = "val", far_distance: float = FAR_DISTANCE,
                      bootstrap: int = 1000, seed: int = 0, progress: bool = True) -> dict:
    """The ceiling row of Table 6: the true labels through the generated maps' resolution (resized nearest to
    ``size`` x ``size`` and back), scored as a generated map would be. ``far_share`` is that of the true colour
    maps (the B halves; JPEG noise in pix2pix's files), the reference for the rows' far shares."""
    acc = LabelMapScore(far_distance, "decode")
    labels = split_labels(data_dir, split, progress=False)
    for name, ids in tqdm(labels, desc="true labels", unit="img", leave=False, disable=None if progress else True):
        small = ids if size is None else resize_nearest(ids, size)
        acc.update(trainids_to_colors(small), ids)
    far_pixels = pixels = 0
    for _, image, _ in ab_frames(data_dir, split):
        dec = decode_label_map(ab_half(read_image(image), image, "B"), far_distance)
        far_pixels += int(dec.far.sum())
        pixels += dec.far.size
    result = acc.compute(bootstrap=bootstrap, seed=seed)
    result["far_share"] = far_pixels / pixels if pixels else None
    result["source"] = {"images": f"true labels of {data_dir}/{split}", "through": size}
    return result


def palette_share(data_dir: str | Path, split: str = "val", count: int = 8, far_distance: float = FAR_DISTANCE) -> float:
    """Share of the label-half (B) pixels of the first ``count`` images of DATA/SPLIT within ``far_distance`` of a
    Cityscapes palette colour: ~0.97 on pix2pix's Cityscapes, 1.0 on the synthetic scenes, ~0.27 on CMP Facades."""
    near = total = 0
    for image in list_images(Path(data_dir) / split)[:count]:
        dec = decode_label_map(ab_half(read_image(image), image, "B"), far_distance)
        near += int((~dec.far).sum())
        total += dec.far.size
    return near / total if total else 0.0
