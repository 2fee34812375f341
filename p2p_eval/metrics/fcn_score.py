"""FCN-score (pix2pix, section 4.1): segment generated photos with a segmenter trained on real photos
and score the predicted labels against the ground truth of the frames the photos were generated from.

The scores come from one confusion matrix over the set (:mod:`p2p_eval.confusion`, which names
the references it matches) with 95% bootstrap intervals over images (:mod:`p2p_eval.metrics.bootstrap`).

Two protocols (the differences from the original script are tabled in the README):

- ``"resized"`` (default): each image is resized (bilinear, antialiased) to the segmenter's input size
  S, the labels are resized to S x S by nearest neighbour, classes averaged over those present.
- ``"original"``: as pix2pix's ``scripts/eval_cityscapes/evaluate.py``: the labels are the official
  gtFine ``*_labelIds.png`` at their full resolution (2048x1024), the prediction is made at S and its
  class scores are upsampled (bilinear) to the label's size before the argmax, and class means follow
  the original ``diag / (sum + 1e-12)``.

A folder written by the public pix2pix test script (``N_real_A.png``, ``N_fake_B.png``, ``N_real_B.png``)
is scored through its ``*_fake_B`` images; a folder covering only some frames of the labels is scored
on those frames and marked ``"subset": true``.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from p2p_eval.confusion import CONVENTIONS, ConfusionMatrix
from p2p_eval.data.cityscapes import TRAIN_CLASSES, label_format, load_label_map, trainids_to_colors
from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError, file_list, require_dir, require_file
from p2p_eval.fsutil import atomic_write_bytes
from p2p_eval.imageio import list_images, read_image, write_png
from p2p_eval.metrics.bootstrap import bootstrap_ci
from p2p_eval.segmentation.data import SegmentationPairs, default_workers, read_label, resize_photo, split_pairs
from p2p_eval.segmentation.model import load_segmenter, logits

PROTOCOLS = ("resized", "original")
FRAME_SUFFIXES = ("_leftImg8bit", "_fake_B")  # the original script's and pix2pix's test-output names
PIX2PIX_OTHER = ("_real_A", "_real_B")  # the other images pix2pix's test script writes beside *_fake_B


class GeneratedPairs(torch.utils.data.Dataset):
    """Generated images matched to labels: items ``{"image": uint8 (3, S, S), "label": uint8 (H, W), "name"}``.

    ``labels[i]`` is a label file (train ids / labelIds / colour, see ``load_label_map``) or a
    :class:`~p2p_eval.segmentation.data.Pair` of a data folder.  Labels are resized to S x S unless
    ``full_labels`` (the original protocol keeps them at their own resolution).
    """

    def __init__(self, names: list[str], images: list[Path], labels: list[Any], size: int,
                 full_labels: bool = False, label_format: str | None = None) -> None:
        self.names, self.images, self.labels, self.size = names, images, labels, size
        self.full_labels, self.label_format = full_labels, label_format

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        label, size = self.labels[index], None if self.full_labels else self.size
        if isinstance(label, Path):
            ids = torch.from_numpy(np.ascontiguousarray(load_label_map(label, size, self.label_format)))
        else:
            ids = read_label(label, size)
        image = resize_photo(read_image(self.images[index]), self.size)
        return {"image": image, "label": ids, "name": self.names[index], "index": index}


def frame_name(image: Path) -> str:
    """The frame an image belongs to: its stem without a trailing ``_leftImg8bit`` or ``_fake_B``."""
    stem = image.stem
    for suffix in FRAME_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def pick_generated(images: list[Path]) -> tuple[list[Path], str | None]:
    """The images to score and a note: in a pix2pix test-output folder (``*_fake_B`` beside ``*_real_A`` /
    ``*_real_B``) only the ``*_fake_B`` images; otherwise all of them."""
    fakes = [p for p in images if p.stem.endswith("_fake_B")]
    if not fakes:
        return images, None
    others = [p for p in images if p.stem.endswith(PIX2PIX_OTHER)]
    return fakes, (f"scoring the {len(fakes)} *_fake_B images of a pix2pix test-output folder "
                   f"(ignoring {len(others)} *_real_A / *_real_B and {len(images) - len(fakes) - len(others)} others)")


def match_labels(images: list[Path], labels: dict[str, Any], images_dir: Path,
                 labels_where: str) -> tuple[list[Any], int]:
    """Labels for ``images`` by frame name and the number of labelled frames available.

    Every image needs a label (UserError listing those without); labels without an image are allowed
    (a subset of the frames is scored; the caller reports it).
    """
    stems = [frame_name(p) for p in images]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise UserError(f"{images_dir} has several files for the same frame: {file_list(dupes)}")
    extra = [p.name for p, stem in zip(images, stems) if stem not in labels]
    if extra:
        raise UserError(f"{len(extra)} images have no label in {labels_where}: {file_list(extra)} (images are matched "
                        "to labels by file name without extension and without a trailing _leftImg8bit or _fake_B)")
    return [labels[stem] for stem in stems], len(labels)


@dataclass(frozen=True)
class ScoreOptions:
    """How a set is scored: device, batching, bootstrap and class-mean convention, and what is saved.

    ``convention`` None is ``"original"`` under the original protocol and ``"nanmean"`` otherwise;
    ``num_workers`` None is :func:`~p2p_eval.segmentation.data.default_workers`; ``save_predictions`` (a folder)
    receives each prediction; ``per_image_out`` (``.npz``: names, confusions) the per-image matrices for
    :func:`p2p_eval.metrics.bootstrap.paired_bootstrap`; ``label_format`` states the format of a ``--labels``
    folder (None: decided from all of its maps, :func:`p2p_eval.data.cityscapes.label_format`)."""

    device: str = "auto"
    batch_size: int = 8
    bootstrap: int = 1000
    seed: int = 0
    convention: str | None = None
    num_workers: int | None = None
    progress: bool = True
    save_predictions: str | Path | None = None
    per_image_out: str | Path | None = None
    label_format: str | None = None


def score_pairs(model: torch.nn.Module, meta: dict, dataset: torch.utils.data.Dataset, device: torch.device,
                options: ScoreOptions | None = None, **fields: Any) -> tuple[dict, ConfusionMatrix]:
    """Segment ``dataset``'s images batched (workers decode ahead) and score them against its labels.

    ``fields`` set fields of ``options`` by name (``bootstrap=0``).  A label larger than the segmenter's input
    (the original protocol) gets the class scores upsampled bilinearly to its size before the argmax.  Returns
    (scores with ``ci95`` and ``images``, the ConfusionMatrix with per-image matrices).
    """
    opts = dataclasses.replace(options or ScoreOptions(), **fields)
    convention = opts.convention or "nanmean"
    workers = default_workers() if opts.num_workers is None else opts.num_workers
    loader = torch.utils.data.DataLoader(dataset, batch_size=opts.batch_size, shuffle=False, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    cm = ConfusionMatrix(len(meta["classes"]), device=device, per_image=True, class_names=meta["classes"])
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc="fcn-score", unit="batch", disable=None if opts.progress else True):
            scores = logits(model, meta, batch["image"].to(device, non_blocking=True))
            labels = batch["label"].to(device, non_blocking=True)
            if tuple(labels.shape[-2:]) != tuple(scores.shape[-2:]):
                pred = torch.cat([F.interpolate(one[None], size=tuple(labels.shape[-2:]), mode="bilinear",
                                                align_corners=False).argmax(1) for one in scores])
            else:
                pred = scores.argmax(1)
            cm.update(pred, labels)
            if opts.save_predictions is not None:
                _save_predictions(Path(opts.save_predictions), batch["name"], pred)
    result = cm.compute(convention)
    n_images = len(cm.images)
    if opts.bootstrap and n_images:
        result["ci95"] = {**bootstrap_ci(cm.per_image_array(), n=opts.bootstrap, seed=opts.seed, convention=convention),
                          "method": "percentile bootstrap over images", "replicates": opts.bootstrap, "seed": opts.seed}
    else:
        result["ci95"] = None
    result["images"] = n_images
    return result, cm


def _save_predictions(out: Path, names: list[str], pred: torch.Tensor) -> None:
    """OUT/NAME.png (train ids, uint8) and OUT/color/NAME.png (Cityscapes palette)."""
    ids = pred.to(torch.uint8).cpu()
    for name, one in zip(names, ids):
        write_png(out / f"{name}.png", one)
        write_png(out / "color" / f"{name}.png", torch.from_numpy(trainids_to_colors(one.numpy())).permute(2, 0, 1))


def _official_labels(labels_dir: Path, frames_file: Path | None) -> dict[str, Path]:
    """Frame name -> official ``*_gtFine_labelIds.png`` under ``labels_dir`` (searched recursively); with a
    frame list (``SPLIT_frames.txt`` of ``data prepare-cityscapes``: line N names frame N), also N -> file."""
    found = {p.name[: -len("_gtFine_labelIds.png")]: p for p in labels_dir.rglob("*_gtFine_labelIds.png")}
    if not found:
        raise UserError(f"--protocol original needs the official gtFine labels: no *_gtFine_labelIds.png under "
                        f"{labels_dir}; give --labels CITYSCAPES/gtFine/val")
    if frames_file is not None:
        lines = [ln.strip() for ln in require_file(frames_file, "--frames file").read_text().splitlines() if ln.strip()]
        for number, line in enumerate(lines, start=1):
            frame = Path(line.split()[-1]).name
            frame = frame[: -len("_leftImg8bit.png")] if frame.endswith("_leftImg8bit.png") else frame
            if frame in found:
                found[str(number)] = found[frame]
    return found


def _label_files(files: list[Path]) -> dict[str, Path]:
    """Frame name -> label file.  In an official gtFine folder only ``*_gtFine_labelIds.png`` count (the
    folder also holds colour and instance maps) and the frame is the name before ``_gtFine_labelIds``."""
    official = [p for p in files if p.stem.endswith("_gtFine_labelIds")]
    if official:
        return {p.stem[: -len("_gtFine_labelIds")]: p for p in official}
    return {p.stem: p for p in files}


def score_folder(images_dir: str | Path | None, segmenter: str | Path | None = None,
                 labels_dir: str | Path | None = None, data_dir: str | Path | None = None, real: bool = False,
                 protocol: str = "resized", frames_file: str | Path | None = None, real_size: int | None = None,
                 **fields: Any) -> dict:
    """The JSON of ``p2p-eval fcn-score``: with ``real=True`` :func:`score_real_photos` of DATA, else
    :func:`score_generated` of ``images_dir``; UserError for a combination of inputs the command refuses.
    ``fields`` are :class:`ScoreOptions` fields by name."""
    if real:
        if data_dir is None or images_dir is not None or labels_dir is not None or protocol != "resized":
            raise UserError("--real scores the real val photos of --data DIR; give --data and neither --images, "
                            "--labels nor --protocol original")
        return score_real_photos(data_dir, segmenter, real_size, ScoreOptions(**fields))
    if real_size is not None:
        raise UserError("--real-size applies to --real (the real val photos) only")
    if images_dir is None or (labels_dir is None) == (data_dir is None):
        raise UserError("give --images DIR and exactly one of --labels DIR or --data DIR (or --data DIR --real)")
    return score_generated(images_dir, segmenter, labels_dir, data_dir, protocol, frames_file, ScoreOptions(**fields))


def score_generated(images_dir: str | Path, segmenter: str | Path | None = None, labels_dir: str | Path | None = None,
                    data_dir: str | Path | None = None, protocol: str = "resized", frames_file: str | Path | None = None,
                    options: ScoreOptions | None = None) -> dict:
    """FCN-score of a folder of generated images (``segmenter`` None: the shipped default).

    Labels come from ``labels_dir`` (matched by frame name, see :func:`frame_name`; an official gtFine folder is
    read through its ``*_gtFine_labelIds.png``) or from ``data_dir``'s val split (AB layout: ``val_labels/`` or
    the colour B half; official layout: gtFine labelIds).  ``protocol="original"`` needs official labels
    (``labels_dir``, searched recursively; ``frames_file`` maps numbered images to frames).
    """
    opts = options or ScoreOptions()
    model, meta, dev = _segmenter(segmenter, protocol, opts)
    images = list_images(require_dir(images_dir, "--images folder"))
    if not images:
        raise UserError(f"no images (png/jpg) in {images_dir}")
    images, note = pick_generated(images)
    if protocol == "original":
        if labels_dir is None:
            raise UserError("--protocol original compares with the official gtFine labels at full resolution: "
                            "give --labels CITYSCAPES/gtFine/val (and --frames SPLIT_frames.txt for numbered images)")
        labels: dict[str, Any] = _official_labels(require_dir(labels_dir, "--labels folder"),
                                                  None if frames_file is None else Path(frames_file))
        where = f"the gtFine labelIds under {labels_dir}"
    elif labels_dir is not None:
        labels = _label_files(list_images(require_dir(labels_dir, "--labels folder")))
        where = str(labels_dir)
    else:
        labels = {p.name: p for p in split_pairs(data_dir, "val")}
        where = f"the val split of {data_dir}"
    matched, available = match_labels(images, labels, Path(images_dir), where)
    if protocol == "original":
        available = len({p for p in labels.values()})
    names = [frame_name(p) for p in images]
    files = [label for label in matched if isinstance(label, Path)]
    fmt = "labelids" if protocol == "original" else (label_format(files, opts.label_format) if files else None)
    dataset = GeneratedPairs(names, images, matched, int(meta["input_size"]), full_labels=protocol == "original",
                             label_format=fmt)
    source = {"images": str(images_dir), "labels": str(labels_dir or data_dir), "real": False}
    return _scored((model, meta, dev), dataset, names, protocol, opts, source, available, note)


def score_real_photos(data_dir: str | Path, segmenter: str | Path | None = None, real_size: int | None = None,
                      options: ScoreOptions | None = None) -> dict:
    """FCN-score of DATA's real val photos (the ground-truth row; ``segmenter`` None: the shipped default).

    ``real_size`` first resizes the photos to ``real_size`` x ``real_size``, the resolution of the generated
    images they are compared with, so both pass through the same bottleneck."""
    opts = options or ScoreOptions()
    model, meta, dev = _segmenter(segmenter, "resized", opts)
    if real_size is not None and real_size < 1:
        raise UserError(f"--real-size must be a positive side in pixels, got {real_size}")
    pairs = split_pairs(data_dir, "val")
    dataset = SegmentationPairs(pairs, int(meta["input_size"]), through=real_size)
    source = {"images": f"real photos of {data_dir}/val", "labels": str(data_dir), "real": True, "through": real_size}
    return _scored((model, meta, dev), dataset, [pair.name for pair in pairs], "resized", opts, source)


def _segmenter(segmenter: str | Path | None, protocol: str,
               opts: ScoreOptions) -> tuple[torch.nn.Module, dict, torch.device]:
    """Check the protocol and options, then load the segmenter: (model, meta, device)."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if _convention(protocol, opts) not in CONVENTIONS:
        raise UserError(f"unknown convention {opts.convention!r}; valid: {', '.join(CONVENTIONS)}")
    if opts.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {opts.batch_size}")
    dev = resolve_device(opts.device)
    model, meta = load_segmenter(segmenter, dev, classes=TRAIN_CLASSES)
    return model, meta, dev


def _convention(protocol: str, opts: ScoreOptions) -> str:
    return opts.convention or ("original" if protocol == "original" else "nanmean")


def _scored(loaded: tuple[torch.nn.Module, dict, torch.device], dataset: torch.utils.data.Dataset, names: list[str],
            protocol: str, opts: ScoreOptions, source: dict, available: int | None = None,
            note: str | None = None) -> dict:
    """The JSON of :func:`score_pairs` of ``dataset`` by the loaded segmenter, with the subset, segmenter,
    protocol, note and source records; writes the per-image matrices of ``names`` to ``opts.per_image_out``
    when given.  ``available``: the labelled frames the images were matched among (None: the images)."""
    model, meta, dev = loaded
    convention = _convention(protocol, opts)
    result, cm = score_pairs(model, meta, dataset, dev, dataclasses.replace(opts, convention=convention))
    if opts.per_image_out is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, names=np.array(names), confusions=cm.per_image_array())
        atomic_write_bytes(opts.per_image_out, buf.getvalue())
    result["subset"] = available is not None and result["images"] < available
    result["frames_available"] = available if available is not None else result["images"]
    size = int(meta["input_size"])
    result["segmenter"] = {k: meta[k] for k in ("sha256", "path", "arch", "encoder", "input_size", "epochs",
                                                "trained_on", "val") if k in meta}
    result["segmenter"]["name"] = Path(meta["path"]).name
    result["protocol"] = {"name": protocol, "resolution": size,
                          "images": "resized bilinear (antialiased) to the segmenter input",
                          "labels": ("official gtFine labelIds at full resolution; class scores upsampled bilinearly "
                                     "to the label size" if protocol == "original" else
                                     "train ids, resized nearest-neighbour to the segmenter input") + "; 255 ignored",
                          "means": convention}
    if note:
        result["note"] = note
    result["source"] = source
    return result


def format_table(result: dict) -> str:
    """A plain-text report: the three scores with 95% intervals, the per-class table and the fingerprint."""
    def f(x: float | None) -> str:
        return "  n/a" if x is None else f"{x:.3f}"

    ci = result.get("ci95") or {}
    lines = [f"FCN-score of {result['images']} images ({result['source']['images']})"]
    if result.get("note"):
        lines.append(f"  note: {result['note']}")
    if result.get("subset"):
        lines.append(f"  subset: {result['images']} of the {result['frames_available']} labelled frames "
                     "(scores of a subset are not comparable with full-set scores)")
    for key, label in (("pixel_accuracy", "per-pixel acc."), ("class_accuracy", "per-class acc."), ("class_iou", "class IOU")):
        lo, hi = ci.get(key, [None, None])
        interval = f"  [95% CI {f(lo)}, {f(hi)}]" if lo is not None else ""
        lines.append(f"  {label:15s} {f(result[key])}{interval}")
    lines.append(f"  {'class':15s} {'acc.':>6s} {'IoU':>6s} {'pixels':>10s}")
    for name, row in result["per_class"].items():
        lines.append(f"  {name:15s} {f(row['accuracy']):>6s} {f(row['iou']):>6s} {row['pixels']:>10d}")
    seg, protocol = result["segmenter"], result["protocol"]
    lines.append(f"segmenter {seg.get('name', '?')}: {seg['arch']}/{seg.get('encoder', '?')} at "
                 f"{seg['input_size']}x{seg['input_size']}, sha256 {seg['sha256']}")
    where = ("labels at full resolution (official gtFine), predictions upsampled" if protocol.get("name") == "original"
             else f"images and labels at {seg['input_size']}x{seg['input_size']} (labels nearest-neighbour)")
    lines.append(f"protocol {protocol.get('name', 'resized')}: {where}, void ignored, class means: {protocol['means']}")
    return "\n".join(lines)
