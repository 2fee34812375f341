"""FCN-score (pix2pix, section 4.1): segment generated photos with a segmenter trained on real photos
and score the predicted labels against the ground truth of the frames the photos were generated from.

The scores come from one confusion matrix over the set (:mod:`p2p_eval.confusion`, which names
the references it matches) with 95% bootstrap intervals over images (:mod:`p2p_eval.metrics.bootstrap`).

Two protocols (the differences from the original script are tabled in ``docs/fcn-score.md``):

- ``"resized"`` (default): each image is resized (bilinear, antialiased) to the segmenter's input size
  S, the labels are resized to S x S by nearest neighbour, classes averaged over those present.
- ``"original"``: as pix2pix's ``scripts/eval_cityscapes/evaluate.py``: the labels are the official
  gtFine ``*_labelIds.png`` at their full resolution (2048x1024), the prediction is made at S and its
  class scores are upsampled (bilinear) to the label's size before the argmax, and class means follow
  the original ``diag / (sum + 1e-12)``.

A folder written by the public pix2pix test script (``N_real_A.png``, ``N_fake_B.png``, ``N_real_B.png``)
is scored through its ``*_fake_B`` images (:func:`pick_generated` decides from the whole folder); a folder
covering only some frames of the labels is scored on those frames and marked ``"subset": true``.

Several sets (:func:`compare_sets`) are scored by one segmenter and compared pair by pair with the paired
bootstrap of :func:`p2p_eval.metrics.bootstrap.paired_bootstrap` on the frames both cover; the real photos
of exactly the frames the generated sets cover can join them as the set ``real``.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from p2p_eval.confusion import CONVENTIONS, ConfusionMatrix, score_arrays
from p2p_eval.data.cityscapes import TRAIN_CLASSES, label_format, load_label_map, trainids_to_colors
from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError, count, file_list, require_dir, require_file
from p2p_eval.fsutil import atomic_write_bytes
from p2p_eval.imageio import list_images, read_image, write_png
from p2p_eval.metrics.bootstrap import SCORES, bootstrap_ci, paired_bootstrap, per_class_ci
from p2p_eval.segmentation.data import Pair, SegmentationPairs, default_workers, read_label, resize_photo, split_pairs
from p2p_eval.segmentation.model import input_hw, load_segmenter, logits

PROTOCOLS = ("resized", "original")
FRAME_SUFFIXES = ("_leftImg8bit", "_fake_B")  # the original script's and pix2pix's test-output names
PIX2PIX_OTHER = ("_real_A", "_real_B")  # the other images pix2pix's test script writes beside *_fake_B


class GeneratedPairs(torch.utils.data.Dataset):
    """Generated images matched to labels: items ``{"image": uint8 (3, S, S), "label": uint8 (H, W), "name"}``.

    ``labels[i]`` is a label file (train ids / labelIds / colour, see ``load_label_map``) or a
    :class:`~p2p_eval.segmentation.data.Pair` of a data folder.  ``size`` is S or (height, width).  Labels are
    resized to it unless ``full_labels`` (the original protocol keeps them at their own resolution); images are
    resized to it, or with ``at_label`` upsampled (bilinear) to their label's size, as the paper's script does.
    """

    def __init__(self, names: list[str], images: list[Path], labels: list[Any], size: int | tuple[int, int],
                 full_labels: bool = False, label_format: str | None = None, at_label: bool = False) -> None:
        self.names, self.images, self.labels, self.size = names, images, labels, size
        self.full_labels, self.label_format, self.at_label = full_labels, label_format, at_label

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        label, size = self.labels[index], None if self.full_labels else self.size
        if isinstance(label, Path):
            ids = torch.from_numpy(np.ascontiguousarray(load_label_map(label, size, self.label_format)))
        else:
            ids = read_label(label, size)
        image = resize_photo(read_image(self.images[index]), tuple(ids.shape[-2:]) if self.at_label else self.size)
        return {"image": image, "label": ids, "name": self.names[index], "index": index}


def frame_name(image: Path) -> str:
    """The frame an image belongs to: its stem without a trailing ``_leftImg8bit`` or ``_fake_B``."""
    stem = image.stem
    for suffix in FRAME_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def pick_generated(images: list[Path], folder: str | Path = "the folder",
                   fake_b_only: bool = False) -> tuple[list[Path], str | None]:
    """The images to score and a note, decided from the whole folder.

    A folder of ``*_fake_B`` images, with or without the ``*_real_A`` / ``*_real_B`` images the public pix2pix
    test script writes beside them, is scored through its ``*_fake_B`` images.  A folder that mixes
    ``*_fake_B`` images with other images is a UserError naming what would be ignored, unless ``fake_b_only``
    (``--only-fake-b``) says that scoring only the ``*_fake_B`` images is intended; ``fake_b_only`` on a
    folder without ``*_fake_B`` images is a UserError too.  Any other folder is scored whole.
    """
    fakes = [p for p in images if p.stem.endswith("_fake_B")]
    if not fakes:
        if fake_b_only:
            raise UserError(f"--only-fake-b: {folder} holds no *_fake_B images; drop --only-fake-b to score all "
                            f"{len(images)} images")
        return images, None
    others = [p for p in images if p.stem.endswith(PIX2PIX_OTHER)]
    rest = [p.name for p in images if not p.stem.endswith(("_fake_B", *PIX2PIX_OTHER))]
    if rest and not fake_b_only:
        raise UserError(f"{folder} mixes {len(fakes)} *_fake_B images (a pix2pix test-output folder) with {len(rest)} "
                        f"other images that would not be scored: {file_list(rest, 5)}; pass --only-fake-b to score "
                        "only the *_fake_B images, or move the others out")
    return fakes, (f"scoring the {len(fakes)} *_fake_B images of a pix2pix test-output folder "
                   f"(ignoring {len(others)} *_real_A / *_real_B and {len(rest)} others)")


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
    folder (None: decided from all of its maps, :func:`p2p_eval.data.cityscapes.label_format`); ``per_class``
    adds each class's 95% bootstrap intervals; ``fake_b_only`` scores only the ``*_fake_B`` images of a folder
    that also holds other images (:func:`pick_generated`)."""

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
    per_class: bool = False
    fake_b_only: bool = False


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
        if opts.per_class:
            ci = per_class_ci(cm.per_image_array(), n=opts.bootstrap, seed=opts.seed, convention=convention)
            for k, row in enumerate(result["per_class"].values()):
                row["ci95"] = {"accuracy": ci["accuracy"][k], "iou": ci["iou"][k]}
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


def score_folder(images_dir: str | Path | list | None, segmenter: str | Path | None = None,
                 labels_dir: str | Path | None = None, data_dir: str | Path | None = None, real: bool = False,
                 protocol: str = "resized", frames_file: str | Path | None = None, real_size: int | None = None,
                 names: list[str] | None = None, **fields: Any) -> dict:
    """The JSON of ``p2p-eval fcn-score``; UserError for a combination of inputs the command refuses.

    ``images_dir`` is one folder or a list of them.  One folder: :func:`score_generated`; ``real=True`` without
    folders: :func:`score_real_photos` of DATA; several folders, or folders with ``real=True``: :func:`compare_sets`
    (``names`` name the sets).  ``fields`` are :class:`ScoreOptions` fields by name.
    """
    dirs = [] if images_dir is None else [images_dir] if isinstance(images_dir, (str, Path)) else list(images_dir)
    opts = ScoreOptions(**fields)
    if real_size is not None and not real:
        raise UserError("--real-size applies to --real (the real val photos) only")
    if real and (data_dir is None or labels_dir is not None or protocol != "resized"):
        raise UserError("--real scores the real val photos of --data DIR (all of them, or with --images those of the "
                        "frames the images cover); give --data and neither --labels nor --protocol original")
    if real and not dirs:
        return score_real_photos(data_dir, segmenter, real_size, opts)
    if not dirs or (labels_dir is None) == (data_dir is None):
        raise UserError("give --images DIR and exactly one of --labels DIR or --data DIR (or --data DIR --real)")
    if len(dirs) == 1 and not real:
        return score_generated(dirs[0], segmenter, labels_dir, data_dir, protocol, frames_file, opts)
    inputs = SetInputs(tuple(Path(d) for d in dirs), tuple(names or ()), labels_dir, data_dir, real, protocol,
                       frames_file, real_size)
    return compare_sets(inputs, segmenter, opts)


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
    loaded = _segmenter(segmenter, protocol, opts)
    dataset, _, available, note, source = _generated_set(images_dir, loaded[1], labels_dir, data_dir, protocol,
                                                         frames_file, opts)
    return _scored(loaded, dataset, dataset.names, protocol, opts, source, available, note)[0]


def _generated_set(images_dir: str | Path, meta: dict, labels_dir: str | Path | None, data_dir: str | Path | None,
                   protocol: str, frames_file: str | Path | None,
                   opts: ScoreOptions) -> tuple[GeneratedPairs, list[Any], int, str | None, dict]:
    """A folder of generated images matched to its labels: (dataset, the label of each image - the key that
    pairs images of different sets -, labelled frames available, note, source record)."""
    images = list_images(require_dir(images_dir, "--images folder"))
    if not images:
        raise UserError(f"no images (png/jpg) in {images_dir}")
    images, note = pick_generated(images, images_dir, opts.fake_b_only)
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
    at_label = protocol == "original" and segments_at_label(meta)
    dataset = GeneratedPairs(names, images, matched, input_hw(meta), full_labels=protocol == "original",
                             label_format=fmt, at_label=at_label)
    if at_label:
        note = "; ".join(filter(None, [note, _resolution_warning(meta, matched[0])]))
    source = {"images": str(images_dir), "labels": str(labels_dir or data_dir), "real": False}
    return dataset, matched, available, note or None, source


def segments_at_label(meta: dict) -> bool:
    """Whether ``--protocol original`` segments each image at its label's size (the paper's script): for a
    segmenter trained on whole non-square frames (``input_hw`` in its file, ``segmenter train --size WxH``).
    A square segmenter (the shipped 256 px one) segments at its input size and its class scores are upsampled."""
    return "input_hw" in meta


def _resolution_warning(meta: dict, label: Path) -> str | None:
    """A one-line warning on stderr (also returned for the JSON note) when the labels are more than 1.5x larger
    or smaller than the frames the segmenter was trained on; None otherwise."""
    from PIL import Image

    with Image.open(label) as im:
        width, height = im.size
    trained_h, trained_w = input_hw(meta)
    ratio = max(height / trained_h, trained_h / height, width / trained_w, trained_w / width)
    if ratio <= 1.5:
        return None
    text = (f"warning: segmenter {Path(meta['path']).name} was trained at {trained_w}x{trained_h} and segments "
            f"{width}x{height} images here ({ratio:.1f}x off its training resolution); train one at --size "
            f"{width}x{height} for the paper's protocol")
    print(text, file=sys.stderr)
    return text


def score_real_photos(data_dir: str | Path, segmenter: str | Path | None = None, real_size: int | None = None,
                      options: ScoreOptions | None = None) -> dict:
    """FCN-score of DATA's real val photos (the ground-truth row; ``segmenter`` None: the shipped default).

    ``real_size`` first resizes the photos to ``real_size`` x ``real_size``, the resolution of the generated
    images they are compared with, so both pass through the same bottleneck."""
    opts = options or ScoreOptions()
    loaded = _segmenter(segmenter, "resized", opts)
    dataset, pairs, available, source = _real_set(data_dir, loaded[1], real_size)
    return _scored(loaded, dataset, [pair.name for pair in pairs], "resized", opts, source, available)[0]


def _real_set(data_dir: str | Path, meta: dict, real_size: int | None,
              covered: set | None = None) -> tuple[SegmentationPairs, list[Pair], int, dict]:
    """DATA's real val photos (only the frames in ``covered``, a set of :class:`Pair`, when given): (dataset,
    its frames, frames available, source record)."""
    if real_size is not None and real_size < 1:
        raise UserError(f"--real-size must be a positive side in pixels, got {real_size}")
    every = split_pairs(data_dir, "val")
    pairs = every if covered is None else [pair for pair in every if pair in covered]
    dataset = SegmentationPairs(pairs, input_hw(meta), through=real_size)
    source = {"images": f"real photos of {data_dir}/val", "labels": str(data_dir), "real": True, "through": real_size}
    return dataset, pairs, len(every), source


@dataclass(frozen=True)
class SetInputs:
    """The inputs of a comparison of several sets: the generated folders and their names (empty: the folders'
    names), where the labels come from (``labels`` or ``data``), whether the real photos of ``data`` join as the
    set ``real`` (the frames the folders cover, through ``real_size`` px when given), protocol and frame list."""

    images: tuple[Path, ...]
    names: tuple[str, ...] = ()
    labels: str | Path | None = None
    data: str | Path | None = None
    real: bool = False
    protocol: str = "resized"
    frames: str | Path | None = None
    real_size: int | None = None


def set_names(inputs: SetInputs) -> list[str]:
    """The names of the generated sets: ``inputs.names`` (one per folder) or the folders' own names; UserError
    for a wrong count, a repeated name, a name that is no plain folder name, or ``real`` beside ``--real``."""
    names = list(inputs.names) or [Path(d).resolve().name for d in inputs.images]
    if len(names) != len(inputs.images):
        given = f"{len(names)} name" + ("" if len(names) == 1 else "s")
        raise UserError(f"--names gives {given} for {len(inputs.images)} --images folders; give one name per folder, "
                        "in the same order")
    bad = [n for n in names if not n or n in (".", "..") or "/" in n or "\\" in n]
    if bad:
        raise UserError(f"--names: {file_list(repr(n) for n in bad)} cannot name a set (it names a prediction "
                        "subfolder too); use letters, digits, '-' or '_'")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"the sets need distinct names, but {file_list(dupes)} repeats; give --names A --names B ...")
    if inputs.real and "real" in names:
        raise UserError("the name 'real' belongs to the --real row; give the generated folder another --names")
    return names


def compare_sets(inputs: SetInputs, segmenter: str | Path | None = None, options: ScoreOptions | None = None) -> dict:
    """FCN-scores of several sets by one segmenter and, for every pair of sets (A listed before B), the paired
    bootstrap of score(A) - score(B) on the frames both cover (:func:`compare_pair`).

    With ``inputs.real`` the real photos of exactly the frames the generated sets cover join as the last set,
    ``real``.  Returns ``{"sets": {name: JSON of one set}, "comparisons": [...], "paired_bootstrap": {...}}``;
    ``--save-predictions DIR`` writes each set's predictions to ``DIR/NAME/``.
    """
    opts = options or ScoreOptions()
    if opts.per_image_out is not None:
        raise UserError("--per-image saves the matrices of one set: give it with a single --images (once per folder)")
    names = set_names(inputs)
    loaded = _segmenter(segmenter, inputs.protocol, opts)
    sets: dict[str, dict] = {}
    scored: dict[str, tuple[list[Any], np.ndarray]] = {}
    for name, folder in zip(names, inputs.images):
        dataset, keys, available, note, source = _generated_set(folder, loaded[1], inputs.labels, inputs.data,
                                                                inputs.protocol, inputs.frames, opts)
        sets[name], per_image = _scored(loaded, dataset, dataset.names, inputs.protocol, _for_set(opts, name), source,
                                        available, note)
        scored[name] = (keys, per_image)
    if inputs.real:
        covered = {key for keys, _ in scored.values() for key in keys}
        dataset, pairs, available, source = _real_set(inputs.data, loaded[1], inputs.real_size, covered)
        sets["real"], per_image = _scored(loaded, dataset, [p.name for p in pairs], "resized", _for_set(opts, "real"),
                                          source, available)
        scored["real"] = (pairs, per_image)
    convention = _convention(inputs.protocol, opts)
    classes = list(loaded[1]["classes"])
    comparisons = [compare_pair(a, b, scored, classes, dataclasses.replace(opts, convention=convention))
                   for a, b in itertools.combinations(sets, 2)]
    method = {"method": "paired percentile bootstrap over the frames both sets cover (the same resamples for both)",
              "replicates": opts.bootstrap, "seed": opts.seed, "level": 0.95, "means": convention}
    return {"sets": sets, "comparisons": comparisons, "paired_bootstrap": method}


def _for_set(opts: ScoreOptions, name: str) -> ScoreOptions:
    """``opts`` with predictions saved to ``DIR/NAME`` (one subfolder per set)."""
    if opts.save_predictions is None:
        return opts
    return dataclasses.replace(opts, save_predictions=Path(opts.save_predictions) / name)


def compare_pair(a: str, b: str, scored: dict[str, tuple[list[Any], np.ndarray]], classes: list[str],
                 opts: ScoreOptions) -> dict:
    """Score(A) - score(B) on the frames both sets cover (frames are paired by their label, in A's order), with
    :func:`p2p_eval.metrics.bootstrap.paired_bootstrap`'s interval and p-value; ``opts.convention`` is set.

    Returns ``{"a", "b", "frames" (shared), "only_a", "only_b", SCORE: {"a", "b", "difference", "ci95",
    "p_value"}}`` (each set's scores on the shared frames), plus ``"per_class"`` with ``opts.per_class``.
    """
    (keys_a, mats_a), (keys_b, mats_b) = scored[a], scored[b]
    index_b = {key: i for i, key in enumerate(keys_b)}
    shared = [(i, index_b[key]) for i, key in enumerate(keys_a) if key in index_b]
    out: dict[str, Any] = {"a": a, "b": b, "frames": len(shared), "only_a": len(keys_a) - len(shared),
                           "only_b": len(keys_b) - len(shared)}
    if not shared:
        return {**out, **{name: None for name in SCORES}}
    rows_a = mats_a[[i for i, _ in shared]]
    rows_b = mats_b[[j for _, j in shared]]
    diff = paired_bootstrap(rows_a, rows_b, n=opts.bootstrap, seed=opts.seed, convention=opts.convention,
                            per_class=opts.per_class)
    score_a, score_b = score_arrays(rows_a.sum(0), opts.convention), score_arrays(rows_b.sum(0), opts.convention)
    for name in SCORES:
        out[name] = {"a": _value(score_a[name]), "b": _value(score_b[name]), **diff[name]}
    if opts.per_class:
        out["per_class"] = {cls: {kind: {"a": _value(score_a[kind][k]), "b": _value(score_b[kind][k]),
                                         **diff["per_class"][kind][k]} for kind in ("accuracy", "iou")}
                            for k, cls in enumerate(classes)}
    return out


def _value(x: float | np.floating) -> float | None:
    """A float for JSON, None for NaN."""
    return None if np.isnan(x) else float(x)


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
            note: str | None = None) -> tuple[dict, np.ndarray]:
    """The JSON of :func:`score_pairs` of ``dataset`` by the loaded segmenter, with the subset, segmenter,
    protocol, note and source records, and the (N, K, K) per-image matrices; writes the per-image matrices of ``names`` to ``opts.per_image_out``
    when given.  ``available``: the labelled frames the images were matched among (None: the images)."""
    model, meta, dev = loaded
    convention = _convention(protocol, opts)
    at_label = protocol == "original" and segments_at_label(meta)
    batch = 1 if at_label else opts.batch_size  # full-resolution frames: one per pass
    result, cm = score_pairs(model, meta, dataset, dev, dataclasses.replace(opts, convention=convention,
                                                                            batch_size=batch))
    if opts.per_image_out is not None:
        buf = io.BytesIO()
        np.savez_compressed(buf, names=np.array(names), confusions=cm.per_image_array())
        atomic_write_bytes(opts.per_image_out, buf.getvalue())
    result["subset"] = available is not None and result["images"] < available
    result["frames_available"] = available if available is not None else result["images"]
    height, width = input_hw(meta)
    result["segmenter"] = {k: meta[k] for k in ("sha256", "path", "arch", "encoder", "input_size", "input_hw",
                                                "epochs", "trained_on", "val") if k in meta}
    result["segmenter"]["name"] = Path(meta["path"]).name
    labels = ("official gtFine labelIds at full resolution; " + ("images segmented at the label size" if at_label else
              "class scores upsampled bilinearly to the label size") if protocol == "original" else
              "train ids, resized nearest-neighbour to the segmenter input")
    result["protocol"] = {"name": protocol, "resolution": width if width == height else [height, width],
                          "images": ("upsampled bilinear to the label size (the paper's script)" if at_label else
                                     "resized bilinear (antialiased) to the segmenter input"),
                          "labels": labels + "; 255 ignored", "means": convention}
    result["note"] = note or None
    result["source"] = source
    return result, cm.per_image_array()


def _f(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:.3f}"


def _ci(lo_hi: list | None) -> str:
    """`` [lo, hi]`` or nothing when there is no interval."""
    if not lo_hi or lo_hi[0] is None:
        return ""
    return f" [{_f(lo_hi[0])}, {_f(lo_hi[1])}]"


def _signed(d: dict | None) -> str:
    """A paired difference: ``+0.012 [+0.004, +0.020] p=0.004``."""
    def g(x: float | None) -> str:
        return "n/a" if x is None else f"{x:+.3f}"

    if d is None or d["difference"] is None:
        return "n/a"
    text = g(d["difference"])
    if d["ci95"][0] is not None:
        text += f" [{g(d['ci95'][0])}, {g(d['ci95'][1])}] p={d['p_value']:.3f}"
    return text


SCORE_LABELS = (("pixel_accuracy", "per-pixel acc."), ("class_accuracy", "per-class acc."), ("class_iou", "class IoU"))


def format_table(result: dict) -> str:
    """A plain-text report: the three scores with 95% intervals, the per-class table (with each class's
    intervals under ``--per-class``) and the fingerprint; several sets: :func:`format_sets`."""
    if "sets" in result:
        return format_sets(result)
    ci = result.get("ci95") or {}
    lines = [f"FCN-score of {count(result['images'], 'image')} ({result['source']['images']})"]
    if result.get("note"):
        lines.append(f"  note: {result['note']}")
    if result.get("subset"):
        lines.append(f"  subset: {result['images']} of the {result['frames_available']} labelled frames "
                     "(scores of a subset are not comparable with full-set scores)")
    for key, label in SCORE_LABELS:
        lo, hi = ci.get(key, [None, None])
        interval = f"  [95% CI {_f(lo)}, {_f(hi)}]" if lo is not None else ""
        lines.append(f"  {label:15s} {_f(result[key])}{interval}")
    rows = result["per_class"]
    with_ci = any("ci95" in row for row in rows.values())
    wide = 16 if with_ci else 0
    lines.append(f"  {'class':15s} {'acc.':>{6 + wide}s} {'IoU':>{6 + wide}s} {'pixels':>10s}")
    for name, row in rows.items():
        acc, iou = _f(row["accuracy"]), _f(row["iou"])
        if with_ci:
            acc, iou = acc + _ci(row["ci95"]["accuracy"]), iou + _ci(row["ci95"]["iou"])
        lines.append(f"  {name:15s} {acc:>{6 + wide}s} {iou:>{6 + wide}s} {row['pixels']:>10d}")
    return "\n".join(lines + _fingerprint(result))


def _fingerprint(result: dict) -> list[str]:
    """The segmenter and protocol lines of one set's JSON."""
    seg, protocol = result["segmenter"], result["protocol"]
    height, width = input_hw(seg)
    if protocol.get("name") != "original":
        where = f"images and labels at {width}x{height} (labels nearest-neighbour)"
    elif protocol["images"].startswith("upsampled"):
        where = "labels at full resolution (official gtFine), images upsampled to them and segmented there"
    else:
        where = "labels at full resolution (official gtFine), predictions upsampled"
    return [f"segmenter {seg.get('name', '?')}: {seg['arch']}/{seg.get('encoder', '?')} at "
            f"{width}x{height}, sha256 {seg['sha256']}",
            f"protocol {protocol.get('name', 'resized')}: {where}, void ignored, class means: {protocol['means']}"]


def format_sets(result: dict) -> str:
    """The report of :func:`compare_sets`: one row per set (scores with 95% intervals), one row per pair of
    sets (A - B on the frames both cover, paired 95% interval and p-value), the per-class IoU table with
    ``--per-class``, and the segmenter and protocol."""
    sets, comparisons = result["sets"], result["comparisons"]
    width = max(15, *(len(n) for n in sets))
    lines = [f"FCN-score of {len(sets)} sets by one segmenter (95% CIs: percentile bootstrap over images)",
             (f"  {'set':{width}s} {'images':>6s}  " + "  ".join(f"{label:22s}" for _, label in SCORE_LABELS)).rstrip()]
    for name, res in sets.items():
        ci = res.get("ci95") or {}
        cells = [f"{_f(res[key]) + _ci(ci.get(key)):22s}" for key, _ in SCORE_LABELS]
        lines.append((f"  {name:{width}s} {res['images']:>6d}  " + "  ".join(cells)).rstrip())
    for name, res in sets.items():
        if res.get("subset"):
            lines.append(f"  {name}: subset: {res['images']} of the {res['frames_available']} labelled frames "
                         "(not comparable with full-set scores)")
        if res.get("note"):
            lines.append(f"  {name}: note: {res['note']}")
    lines.append("differences A - B on the frames both sets cover (paired bootstrap over those frames, "
                 "the same resamples for both sets)")
    pair_width = max(width, *(len(c["a"]) + len(c["b"]) + 3 for c in comparisons))
    lines.append((f"  {'A - B':{pair_width}s} {'frames':>6s}  " + "  ".join(f"{label:32s}" for _, label in SCORE_LABELS)).rstrip())
    for c in comparisons:
        cells = [f"{_signed(c[key]):32s}" for key, _ in SCORE_LABELS]
        lines.append(f"  {c['a'] + ' - ' + c['b']:{pair_width}s} {c['frames']:>6d}  " + "  ".join(cells).rstrip())
        if c["only_a"] or c["only_b"]:
            lines.append(f"  {'':{pair_width}s} ({c['only_a']} frames only in {c['a']}, {c['only_b']} only in {c['b']}: "
                         "not compared)")
    if any("per_class" in c for c in comparisons):
        lines += _per_class_sets(sets, comparisons)
    return "\n".join(lines + _fingerprint(next(iter(sets.values()))))


def _per_class_sets(sets: dict[str, dict], comparisons: list[dict]) -> list[str]:
    """Per-class IoU of every set side by side, and every pair's IoU difference with its paired interval."""
    names = list(sets)
    head = "  ".join(f"{n:>{max(6, len(n))}s}" for n in names)
    pairs = "  ".join(f"{c['a'] + ' - ' + c['b']:32s}" for c in comparisons)
    lines = ["per-class IoU of each set, and A - B on the frames both cover",
             f"  {'class':15s} {head}  {pairs}".rstrip()]
    for cls in next(iter(sets.values()))["per_class"]:
        values = "  ".join(f"{_f(sets[n]['per_class'][cls]['iou']):>{max(6, len(n))}s}" for n in names)
        diffs = "  ".join(f"{_signed(c['per_class'][cls]['iou'] if c.get('per_class') else None):32s}"
                          for c in comparisons)
        lines.append(f"  {cls:15s} {values}  {diffs}".rstrip())
    return lines
