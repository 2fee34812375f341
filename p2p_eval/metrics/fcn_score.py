"""FCN-score (pix2pix, section 4.1): segment generated photos with a segmenter trained on real photos
and score the predicted labels against the ground truth of the frames the photos were generated from.

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

Protocol of :func:`score_folder` (differences from the original script in the README): each image is
resized (bilinear, antialiased) to the segmenter's input size S, the labels are resized to S x S by
nearest neighbour, one confusion matrix is accumulated over the set on the device while DataLoader
workers decode the next batch, and 95% bootstrap intervals over images come from per-image matrices
(:mod:`p2p_eval.metrics.bootstrap`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from p2p_eval.errors import UserError
from p2p_eval.metrics.bootstrap import bootstrap_ci, paired_bootstrap

__all__ = ["CONVENTIONS", "ConfusionMatrix", "bootstrap_ci", "confusion_matrices", "format_table",
           "paired_bootstrap", "score_arrays", "score_folder", "score_pairs", "scores_from_confusion"]

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
            class_acc, class_iou = _nanmean(acc), _nanmean(iou)
    return {"pixel_accuracy": pixel, "class_accuracy": class_acc, "class_iou": class_iou,
            "accuracy": acc, "iou": iou, "pixels": rows}


def _nanmean(values: np.ndarray) -> np.ndarray:
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
        from p2p_eval.data.cityscapes import TRAIN_CLASSES

        return list(TRAIN_CLASSES)
    return [str(i) for i in range(k)]


def _num(x: float | np.floating) -> float | None:
    """A float for JSON, ``None`` for NaN."""
    x = float(x)
    return None if math.isnan(x) else x


# ------------------------------------------------------------------------------ set-level scoring


class GeneratedPairs(torch.utils.data.Dataset):
    """Generated images matched to labels: items ``{"image": uint8 (3, S, S), "label": uint8 (S, S), "name"}``.

    ``labels[i]`` is a label file (train ids / labelIds / colour, see ``load_label_map``) or a
    :class:`~p2p_eval.metrics.segmenter.Pair` of a data folder.
    """

    def __init__(self, names: list[str], images: list[Path], labels: list[Any], size: int) -> None:
        self.names, self.images, self.labels, self.size = names, images, labels, size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from p2p_eval.data.cityscapes import load_label_map
        from p2p_eval.imageio import read_image
        from p2p_eval.metrics.segmenter import read_label, resize_photo

        label = self.labels[index]
        if isinstance(label, Path):
            ids = torch.from_numpy(np.ascontiguousarray(load_label_map(label, self.size)))
        else:
            ids = read_label(label, self.size)
        image = resize_photo(read_image(self.images[index]), self.size)
        return {"image": image, "label": ids, "name": self.names[index], "index": index}


FRAME_SUFFIXES = ("_leftImg8bit", "_fake_B")  # the original script's and pix2pix's test-output names


def frame_name(image: Path) -> str:
    """The frame an image belongs to: its stem without a trailing ``_leftImg8bit`` or ``_fake_B``."""
    stem = image.stem
    for suffix in FRAME_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _match(images: list[Path], labels: dict[str, Any], images_dir: Path, labels_where: str) -> list[Any]:
    """Labels for ``images`` by frame name; UserError listing images without labels and labels without images."""
    from p2p_eval.errors import file_list
    from p2p_eval.imageio import natural_key

    stems = [frame_name(p) for p in images]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise UserError(f"{images_dir} has several files with the same name stem: {file_list(dupes)}")
    extra = [p.name for p, stem in zip(images, stems) if stem not in labels]
    missing = sorted(set(labels) - set(stems), key=natural_key)
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"{len(extra)} images have no label in {labels_where}: {file_list(extra)}")
        if missing:
            parts.append(f"{len(missing)} labels have no image in {images_dir}: {file_list(missing)}")
        raise UserError("; ".join(parts) + " (images are matched to labels by file name without extension "
                        "and without a trailing _leftImg8bit or _fake_B)")
    return [labels[stem] for stem in stems]


def score_pairs(model: torch.nn.Module, meta: dict, dataset: torch.utils.data.Dataset, device: torch.device,
                batch_size: int = 8, progress: bool = True, bootstrap: int = 1000, seed: int = 0,
                save_predictions: str | Path | None = None, num_workers: int | None = None,
                convention: str = "nanmean") -> tuple[dict, ConfusionMatrix]:
    """Segment ``dataset``'s images batched (workers decode ahead) and score them against its labels.

    Returns (scores with ``ci95`` and ``images``, the ConfusionMatrix with per-image matrices).
    """
    from tqdm.auto import tqdm

    from p2p_eval.metrics.segmenter import default_workers

    workers = default_workers() if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    cm = ConfusionMatrix(len(meta["classes"]), device=device, per_image=True, class_names=meta["classes"])
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc="fcn-score", unit="batch", disable=not progress):
            pred = predict(model, meta, batch["image"].to(device, non_blocking=True))
            cm.update(pred, batch["label"].to(device, non_blocking=True))
            if save_predictions is not None:
                _save_predictions(Path(save_predictions), batch["name"], pred)
    result = cm.compute(convention)
    n_images = len(cm.images)
    if bootstrap and n_images:
        result["ci95"] = {**bootstrap_ci(cm.per_image_array(), n=bootstrap, seed=seed, convention=convention),
                          "method": "percentile bootstrap over images", "replicates": bootstrap, "seed": seed}
    else:
        result["ci95"] = None
    result["images"] = n_images
    return result, cm


def predict(model: torch.nn.Module, meta: dict, images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) on the model's device -> predicted train ids (B, S, S), int64."""
    from p2p_eval.metrics.segmenter import normalize

    x = normalize(images, meta)
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        logits = model(x)
    return logits.argmax(1)


def _save_predictions(out: Path, names: list[str], pred: torch.Tensor) -> None:
    """OUT/NAME.png (train ids, uint8) and OUT/color/NAME.png (Cityscapes palette)."""
    from p2p_eval.data.cityscapes import trainids_to_colors
    from p2p_eval.imageio import write_png

    ids = pred.to(torch.uint8).cpu()
    for name, one in zip(names, ids):
        write_png(out / f"{name}.png", one)
        write_png(out / "color" / f"{name}.png", torch.from_numpy(trainids_to_colors(one.numpy())).permute(2, 0, 1))


def score_folder(images_dir: str | Path | None, segmenter: str | Path, labels_dir: str | Path | None = None,
                 data_dir: str | Path | None = None, real: bool = False, device: str = "auto", batch_size: int = 8,
                 save_predictions: str | Path | None = None, seed: int = 0, bootstrap: int = 1000,
                 convention: str = "nanmean", num_workers: int | None = None, progress: bool = True,
                 per_image_out: str | Path | None = None) -> dict:
    """FCN-score of a folder of generated images (or, with ``real=True``, of DATA's real val photos).

    Labels come from ``labels_dir`` (matched by frame name, see :func:`frame_name`; an official gtFine
    folder is read through its ``*_gtFine_labelIds.png``) or from ``data_dir``'s val split (AB layout:
    ``val_labels/`` or the colour B half; official layout: gtFine labelIds).  Returns the JSON of
    ``p2p-eval fcn-score``.  ``per_image_out`` saves the per-image matrices (``.npz``: names, confusions)
    for :func:`paired_bootstrap`.
    """
    from p2p_eval.data.cityscapes import TRAIN_CLASSES
    from p2p_eval.device import resolve_device
    from p2p_eval.errors import require_dir
    from p2p_eval.imageio import list_images
    from p2p_eval.metrics.segmenter import SegmentationPairs, load_segmenter, split_pairs

    if convention not in CONVENTIONS:
        raise UserError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    dev = resolve_device(device)
    model, meta = load_segmenter(segmenter, dev, classes=TRAIN_CLASSES)
    size = int(meta["input_size"])
    if real:
        if data_dir is None or images_dir is not None or labels_dir is not None:
            raise UserError("--real scores the real val photos of --data DIR; give --data and neither --images nor --labels")
        dataset: torch.utils.data.Dataset = SegmentationPairs(split_pairs(data_dir, "val"), size)
        source = {"images": f"real photos of {data_dir}/val", "labels": str(data_dir), "real": True}
    else:
        if images_dir is None or (labels_dir is None) == (data_dir is None):
            raise UserError("give --images DIR and exactly one of --labels DIR or --data DIR (or --data DIR --real)")
        images = list_images(require_dir(images_dir, "--images folder"))
        if not images:
            raise UserError(f"no images (png/jpg) in {images_dir}")
        if labels_dir is not None:
            labels = _label_files(list_images(require_dir(labels_dir, "--labels folder")))
            where = str(labels_dir)
        else:
            labels = {p.name: p for p in split_pairs(data_dir, "val")}
            where = f"the val split of {data_dir}"
        matched = _match(images, labels, Path(images_dir), where)
        dataset = GeneratedPairs([frame_name(p) for p in images], images, matched, size)
        source = {"images": str(images_dir), "labels": str(labels_dir or data_dir), "real": False}
    result, cm = score_pairs(model, meta, dataset, dev, batch_size=batch_size, progress=progress, bootstrap=bootstrap,
                             seed=seed, save_predictions=save_predictions, num_workers=num_workers, convention=convention)
    if per_image_out is not None:
        import io

        from p2p_eval.fsutil import atomic_write_bytes

        buf = io.BytesIO()
        names = [_name(dataset, i) for i in range(len(dataset))]
        np.savez_compressed(buf, names=np.array(names), confusions=cm.per_image_array())
        atomic_write_bytes(per_image_out, buf.getvalue())
    result["segmenter"] = {k: meta[k] for k in ("sha256", "arch", "encoder", "input_size", "epochs", "trained_on", "val")
                           if k in meta}
    result["protocol"] = {"resolution": size, "images": "resized bilinear (antialiased) to the segmenter input",
                          "labels": "train ids, resized nearest-neighbour to the segmenter input; 255 ignored",
                          "means": convention}
    result["source"] = source
    return result


def _label_files(files: list[Path]) -> dict[str, Path]:
    """Frame name -> label file.  In an official gtFine folder only ``*_gtFine_labelIds.png`` count (the
    folder also holds colour and instance maps) and the frame is the name before ``_gtFine_labelIds``."""
    official = [p for p in files if p.stem.endswith("_gtFine_labelIds")]
    if official:
        return {p.stem[: -len("_gtFine_labelIds")]: p for p in official}
    return {p.stem: p for p in files}


def _name(dataset: torch.utils.data.Dataset, index: int) -> str:
    return dataset.names[index] if isinstance(dataset, GeneratedPairs) else dataset.pairs[index].name


def format_table(result: dict) -> str:
    """A plain-text report: the three scores with 95% intervals, the per-class table and the fingerprint."""
    def f(x: float | None) -> str:
        return "  n/a" if x is None else f"{x:.3f}"

    ci = result.get("ci95") or {}
    lines = [f"FCN-score of {result['images']} images ({result['source']['images']})"]
    for key, label in (("pixel_accuracy", "per-pixel acc."), ("class_accuracy", "per-class acc."), ("class_iou", "class IOU")):
        lo, hi = ci.get(key, [None, None])
        interval = f"  [95% CI {f(lo)}, {f(hi)}]" if lo is not None else ""
        lines.append(f"  {label:15s} {f(result[key])}{interval}")
    lines.append(f"  {'class':15s} {'acc.':>6s} {'IoU':>6s} {'pixels':>10s}")
    for name, row in result["per_class"].items():
        lines.append(f"  {name:15s} {f(row['accuracy']):>6s} {f(row['iou']):>6s} {row['pixels']:>10d}")
    seg = result["segmenter"]
    lines.append(f"segmenter {seg['arch']}/{seg.get('encoder', '?')} at {seg['input_size']}x{seg['input_size']}, "
                 f"sha256 {seg['sha256']}")
    lines.append(f"protocol: images and labels at {seg['input_size']}x{seg['input_size']} (labels nearest-neighbour), "
                 f"void ignored, class means: {result['protocol']['means']}")
    return "\n".join(lines)
