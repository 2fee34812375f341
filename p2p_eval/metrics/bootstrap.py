"""Bootstrap confidence intervals of FCN-scores over images (percentile bootstrap, Efron & Tibshirani).

The set-level scores are functions of one summed confusion matrix, so a bootstrap replicate is the
sum of the per-image matrices of a resample of images (with replacement), scored exactly like the
full set (:func:`p2p_eval.confusion.score_arrays`).  A resample is drawn as multiplicities
``bincount(rng.integers(0, N, N))`` and all replicates are one matrix product.  The same seed gives
the same intervals (``numpy.random.Generator(PCG64(seed))``).

The paired bootstrap scores two image sets generated from the same frames (same labels, image ``i`` of
set A and image ``i`` of set B made from frame ``i``) on the same resamples of frames, which gives the
interval of the difference and a two-sided bootstrap p-value for "no difference".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from p2p_eval.confusion import score_arrays

SCORES = ("pixel_accuracy", "class_accuracy", "class_iou")


def resample_counts(n_images: int, n: int, seed: int) -> np.ndarray:
    """(n, N) resample counts of N images for n replicates drawn with ``seed``: row r says how often each image is drawn in replicate r."""
    rng = np.random.Generator(np.random.PCG64(seed))
    draws = rng.integers(0, n_images, size=(n, n_images))
    counts = np.zeros((n, n_images), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(n), n_images), draws.ravel()), 1.0)
    return counts


def resampled_sums(per_image: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n, K, K) summed confusion matrices of the n resamples ``counts`` of the (N, K, K) per-image matrices."""
    k = per_image.shape[-1]
    flat = per_image.reshape(per_image.shape[0], k * k).astype(np.float64)
    return (counts @ flat).reshape(-1, k, k)


def _replicates(per_image: np.ndarray, counts: np.ndarray, convention: str) -> dict[str, np.ndarray]:
    s = score_arrays(resampled_sums(per_image, counts), convention)
    return {name: s[name] for name in (*SCORES, "accuracy", "iou")}


def _check(per_image: np.ndarray) -> np.ndarray:
    per_image = np.asarray(per_image)
    if per_image.ndim != 3 or per_image.shape[1] != per_image.shape[2]:
        raise ValueError(f"expected per-image confusion matrices of shape (N, K, K), got {per_image.shape}")
    if per_image.shape[0] == 0:
        raise ValueError("no images to bootstrap")
    return per_image


def percentile_interval(values: np.ndarray, level: float) -> list[float | None]:
    """The central ``level`` percentile interval of the finite replicates ``values`` ([None, None] if none)."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return [None, None]
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def bootstrap_ci(per_image_confusions: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95,
                 convention: str = "nanmean") -> dict[str, list[float | None]]:
    """Percentile bootstrap interval over images for pixel accuracy, class accuracy and class IoU.

    Returns ``{"pixel_accuracy": [lo, hi], "class_accuracy": [...], "class_iou": [...]}`` (``None``
    where every replicate is undefined, e.g. an all-void set).
    """
    per_image = _check(per_image_confusions)
    reps = _replicates(per_image, resample_counts(per_image.shape[0], n, seed), convention)
    return {name: percentile_interval(reps[name], level) for name in SCORES}


def paired_bootstrap(per_image_a: np.ndarray, per_image_b: np.ndarray, n: int = 1000, seed: int = 0,
                     level: float = 0.95, convention: str = "nanmean", per_class: bool = False) -> dict[str, Any]:
    """Paired bootstrap of score(A) - score(B) for two image sets scored on the same N labels.

    Image ``i`` of A and image ``i`` of B belong to frame ``i``; every replicate draws one resample of the
    frames and scores both sets on it.  Per score: ``{"difference": observed A - B, "ci95": [lo, hi],
    "p_value": two-sided}`` where the p-value is ``min(1, 2 * (min(#{d <= 0}, #{d >= 0}) + 1) / (R + 1))``
    over the R replicates ``d`` (the usual +1 correction: never 0, the smallest reportable value is
    2 / (R + 1)).  With ``n=0`` the interval and p-value are None.  ``per_class`` adds ``"per_class"``:
    ``{"accuracy": [one such dict per class], "iou": [...]}`` from the same resamples.
    """
    a, b = _check(per_image_a), _check(per_image_b)
    if a.shape != b.shape:
        raise ValueError(f"paired sets must have the same images and classes: {a.shape} vs {b.shape}")
    counts = resample_counts(a.shape[0], n, seed)
    reps_a, reps_b = _replicates(a, counts, convention), _replicates(b, counts, convention)
    full_a, full_b = score_arrays(a.sum(0), convention), score_arrays(b.sum(0), convention)
    out: dict[str, Any] = {name: _difference(full_a[name] - full_b[name], reps_a[name] - reps_b[name], level)
                           for name in SCORES}
    if per_class:
        out["per_class"] = {name: [_difference(full_a[name][k] - full_b[name][k], reps_a[name][:, k] - reps_b[name][:, k],
                                               level) for k in range(a.shape[-1])] for name in ("accuracy", "iou")}
    return out


def _difference(observed: float, replicates: np.ndarray, level: float) -> dict[str, Any]:
    """``{"difference", "ci95", "p_value"}`` of one observed difference and its bootstrap replicates."""
    diff = replicates[~np.isnan(replicates)]
    observed = float(observed)
    result: dict[str, Any] = {"difference": None if np.isnan(observed) else observed, "ci95": [None, None],
                              "p_value": None}
    if diff.size:
        below, above = int(np.sum(diff <= 0)), int(np.sum(diff >= 0))
        result["ci95"] = percentile_interval(diff, level)
        result["p_value"] = min(1.0, 2.0 * (min(below, above) + 1) / (diff.size + 1))
    return result


def per_class_ci(per_image_confusions: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95,
                 convention: str = "nanmean") -> dict[str, list[list[float | None]]]:
    """Percentile bootstrap intervals of each class's accuracy and IoU over images (same resamples as
    :func:`bootstrap_ci` for the same seed): ``{"accuracy": [[lo, hi], ...], "iou": [[lo, hi], ...]}``."""
    per_image = _check(per_image_confusions)
    reps = _replicates(per_image, resample_counts(per_image.shape[0], n, seed), convention)
    return {name: [percentile_interval(reps[name][:, k], level) for k in range(per_image.shape[-1])] for name in ("accuracy", "iou")}
