"""Marginal color distributions in CIE Lab and their histogram intersection (the paper's Figure 7).

Reference: pix2pix (Isola et al., CVPR 2017), section 4.2 "Colorfulness" and Figure 7: the marginal
distributions of L, a and b over the generated photos, plotted as log probability with the ground truth
dotted (:mod:`p2p_eval.metrics.color_plot`), and scored by histogram intersection (Swain & Ballard, "Color Indexing", 1991: ``sum_i min(p_i,
q_i)`` of the normalised histograms, in [0, 1], higher is better) against the ground truth.

Counts equal the per-image scikit-image loop (``skimage.color.rgb2lab``, D65 / 2 degree observer, then
``numpy.histogram`` per channel) by construction: each of the 2^24 uint8 sRGB colours is converted once by
``rgb2lab`` and its three bins kept in a table (:func:`color_table`); an image's pixels are looked up in it
(``numpy.take``) and their bins counted (``numpy.bincount``).  One unit per bin (the paper's plots): L [0, 100]
in 100 bins, a and b [-128, 128] in 256 (the sRGB gamut reaches a [-86.18, 98.23], b [-107.86, 94.48]); the
last bin is closed, as in ``numpy.histogram`` (white, L = 100, is in the last L bin).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path

import numpy as np
import torch

from p2p_eval.errors import UserError, count, file_list, unknown_name
from p2p_eval.fsutil import atomic_write_bytes, atomic_write_text, write_json
from p2p_eval.imageio import list_images, read_image

CHANNELS = ("L", "a", "b")
#: (low edge, high edge, number of bins) per channel; every bin is one unit wide.
BINS: dict[str, tuple[float, float, int]] = {"L": (0.0, 100.0, 100), "a": (-128.0, 128.0, 256), "b": (-128.0, 128.0, 256)}
#: Version of the table's layout, part of its cache key: bump it when the layout or the way it is built changes.
TABLE_FORMAT = 5


def bin_edges(channel: str) -> np.ndarray:
    """The bin edges of ``channel`` (``L``, ``a`` or ``b``), for ``numpy.histogram`` and plots."""
    lo, hi, n = BINS[channel]
    return np.linspace(lo, hi, n + 1)


def table_path() -> Path:
    """``$XDG_CACHE_HOME/p2p-eval/color/lab-bins-KEY.npy`` (default ``~/.cache``), the cached table; KEY is a
    hash of the bins, scikit-image's version and :data:`TABLE_FORMAT`, so nothing stale is reused."""
    from importlib.metadata import version

    spec = json.dumps({"format": TABLE_FORMAT, "bins": BINS, "skimage": version("scikit-image")}, sort_keys=True)
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "p2p-eval" / "color"
    return folder / f"lab-bins-{hashlib.sha256(spec.encode()).hexdigest()[:16]}.npy"


def build_table() -> np.ndarray:
    """The (2^24,) uint32 table: entry ``r << 16 | g << 8 | b`` is ``L bin | a bin << 8 | b bin << 16`` of that
    sRGB colour, from ``skimage.color.rgb2lab`` and ``numpy.histogram``'s binning (``searchsorted`` on the edges)."""
    from skimage.color import rgb2lab

    table, v, block = np.empty(1 << 24, np.uint32), np.arange(256, dtype=np.uint8), np.empty((16, 256, 256, 3), np.uint8)
    block[..., 1], block[..., 2] = v[None, :, None], v[None, None, :]  # red by image, green by row, blue by column
    for r0 in range(0, 256, 16):
        block[..., 0] = v[r0:r0 + 16, None, None]
        lab = rgb2lab(block)
        entry = np.zeros(block.shape[:3], np.uint32)
        for k, c in enumerate(CHANNELS):
            edges = bin_edges(c)
            if lab[..., k].min() < edges[0] or lab[..., k].max() > edges[-1]:
                raise RuntimeError(f"sRGB colours outside the {c} bins; widen BINS")
            idx = np.minimum(np.searchsorted(edges, lab[..., k], side="right") - 1, len(edges) - 2)  # last bin closed
            entry |= idx.astype(np.uint32) << (8 * k)
        table[r0 << 16:(r0 + 16) << 16] = entry.ravel()
    return table


@functools.cache
def color_table() -> np.ndarray:
    """:func:`build_table`, read from :func:`table_path` when its sha256 sidecar matches, else built and cached
    there (atomically, with its sha256 in ``lab-bins-KEY.sha256``)."""
    path, sidecar = table_path(), table_path().with_suffix(".sha256")
    with contextlib.suppress(OSError, ValueError):  # missing, unreadable or damaged: build it
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == sidecar.read_text().strip():
            return np.load(BytesIO(data))
    table, buffer = build_table(), BytesIO()
    np.save(buffer, table)
    with contextlib.suppress(OSError):  # a read-only cache: the table lives in this process only
        atomic_write_bytes(path, buffer.getvalue())
        atomic_write_text(sidecar, hashlib.sha256(buffer.getvalue()).hexdigest() + "\n")
    return table


def _planes(images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R, G, B planes (N, H, W) of uint8 (N, H, W, 3) / (H, W, 3) numpy or uint8 (N, 3, H, W) / (3, H, W) torch."""
    if isinstance(images, torch.Tensor):
        a = images.detach().cpu().numpy()
        images = np.moveaxis(a, -3, -1) if a.ndim in (3, 4) else a
    a = np.asarray(images)
    a = a[None] if a.ndim == 3 else a
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3) RGB arrays or (N, 3, H, W) tensors, got {a.dtype} {a.shape}")
    return a[..., 0], a[..., 1], a[..., 2]


class LabHistogram:
    """Streaming L / a / b bin counts of uint8 RGB images (optionally inside masks): ``update`` adds a batch,
    ``merge`` another accumulator (other batches, processes), ``compute`` gives the normalised histograms.  The
    state is ``counts`` (``{"L": int64 array of 100 bins, "a": 256, "b": 256}``) and ``images``; the score
    built on it, :func:`histogram_intersection` against the real set, is higher-is-better."""

    higher_is_better = True

    def __init__(self, counts: dict[str, np.ndarray] | None = None, images: int = 0) -> None:
        self.counts = counts if counts is not None else {c: np.zeros(BINS[c][2], np.int64) for c in CHANNELS}
        self.images = images

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabHistogram):
            return NotImplemented
        return self.images == other.images and all(np.array_equal(self.counts[c], other.counts[c]) for c in CHANNELS)

    @property
    def pixels(self) -> int:
        """Number of pixels counted so far."""
        return int(self.counts["L"].sum())

    def update(self, images: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None = None) -> None:
        """Add a batch: uint8 (N, H, W, 3) numpy or (N, 3, H, W) torch; ``mask`` bool (N, H, W) selects pixels."""
        r, g, b = _planes(images)
        key = (r.astype(np.intp) << 16) | (g.astype(np.intp) << 8) | b
        if mask is not None:
            m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
            m = m[None] if m.ndim == 2 else m
            if m.shape != key.shape:
                raise ValueError(f"mask shape {m.shape} does not match the images {key.shape}")
            key = key[m.astype(bool, copy=False)]
        entry = color_table().take(key.ravel())
        for k, c in enumerate(CHANNELS):
            self.counts[c] += np.bincount((entry >> (8 * k)) & 255, minlength=BINS[c][2])
        self.images += r.shape[0]

    def merge(self, other: LabHistogram) -> LabHistogram:
        """Add ``other``'s counts into this accumulator (in place) and return it."""
        for c in CHANNELS:
            self.counts[c] += other.counts[c]
        self.images += other.images
        return self

    def compute(self) -> dict[str, np.ndarray]:
        """Normalised histograms (probability per bin) per channel; raises ValueError when empty."""
        if self.pixels == 0:
            raise ValueError("the histogram is empty: no pixels were counted")
        return {c: self.counts[c] / self.counts[c].sum() for c in CHANNELS}

    def intersection(self, other: LabHistogram) -> dict[str, float]:
        """Per-channel :func:`histogram_intersection` of this set against ``other``."""
        mine, theirs = self.compute(), other.compute()
        return {c: histogram_intersection(mine[c], theirs[c]) for c in CHANNELS}


def histogram_intersection(p: np.ndarray, q: np.ndarray) -> float:
    """``sum_i min(p_i, q_i)`` of the two histograms, each normalised to sum 1 first; in [0, 1]."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms have different bins: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("cannot intersect an empty histogram")
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def load_photo(path: Path, half: str | None = None, size: int | None = None) -> torch.Tensor:
    """uint8 (3, H, W) RGB of ``path`` (:func:`p2p_eval.imageio.read_image`); ``half`` A / B takes the left /
    right half of an AB image; ``size`` resizes to size x size (bilinear, antialiased)."""
    import torchvision.transforms.v2.functional as F

    from p2p_eval.data.aligned import ab_half

    image = read_image(path)
    image = image if half is None else ab_half(image, path, half)
    if size is not None and tuple(image.shape[1:]) != (size, size):
        image = F.resize(image, [size, size], antialias=True)
    return image


def set_histogram(files: list[Path], half: str | None = None, size: int | None = None,
                  masks: dict[str, np.ndarray] | None = None, batch_size: int = 16, progress: bool = True,
                  name: str = "images") -> LabHistogram:
    """Histogram of image files (:func:`load_photo` each, counted at once), inside ``masks[stem]`` when given
    (resized to the image by nearest neighbour); the progress bar moves ``batch_size`` images at a time."""
    from tqdm import tqdm

    from p2p_eval.data.cityscapes import resize_nearest

    hist = LabHistogram()
    for path in tqdm(files, desc=f"Lab {name}", unit="image", leave=False, disable=None if progress else True,
                     miniters=batch_size):
        image = load_photo(path, half, size)
        mask = None if masks is None else resize_nearest(masks[path.stem].astype(np.uint8), tuple(image.shape[1:])) > 0
        hist.update(image, mask)
    return hist


def _class_masks(labels_dir: str | Path | None, fakes: Mapping[str, list[Path]], stems: list[str], class_name: str) -> dict:
    """Boolean masks of one Cityscapes train class per real image stem, from the label maps in ``labels_dir``;
    every fake file (``fakes``: set name -> files) must have a real image of its stem."""
    from p2p_eval.data.cityscapes import TRAIN_CLASSES, label_format, load_label_map

    if labels_dir is None:
        raise UserError(f"--class {class_name} needs --real-labels DIR (the label maps of the real images)")
    if class_name not in TRAIN_CLASSES:
        raise unknown_name("Cityscapes class", class_name, TRAIN_CLASSES)
    labels = {p.stem: p for p in list_images(labels_dir, "--real-labels folder")}
    missing = [s for s in stems if s not in labels]
    if missing:
        raise UserError(f"{labels_dir} has no label map for {file_list(missing)}; give one label PNG per real image, same name")
    for name, files in fakes.items():
        stray = [p.name for p in files if p.stem not in stems]
        if stray:
            raise UserError(f"--images {files[0].parent} ({name}) has images with no real counterpart of the same name: "
                            f"{file_list(stray)}; with --class, file names must match the real ones")
    fmt = label_format([labels[s] for s in stems])  # one format for the folder
    return {s: load_label_map(labels[s], fmt=fmt) == TRAIN_CLASSES.index(class_name) for s in stems}


def compare_sets(real_dir: str | Path, fakes: Mapping[str, str | Path], plot: str | Path | None = None,
                 json_out: str | Path | None = None, size: int | None = None, half: str | None = None,
                 class_name: str | None = None, labels_dir: str | Path | None = None,
                 batch_size: int = 16, progress: bool = True) -> dict:
    """Lab histograms of the real folder and each generated-image folder, their intersections, plot, JSON.

    ``half`` (A / B) reads the real folder as AB pairs; ``size`` resizes every image; ``class_name`` with
    ``labels_dir`` (one label map per real image, same stem) restricts both sets to that Cityscapes class,
    the generated image of stem S using the label map of S; ``progress=False`` shows no bars.  Returns ``{"intersection":
    {SET: {"L", "a", "b"}}, "bins": ..., "counts": {SET: {"L": [...], ...}}, "images": {SET: n}, "source": {"real",
    "images": {SET: DIR}, "real_labels"}, ...}``: image counts per set, folders under the flags that gave them.
    """
    if not fakes:
        raise UserError("give at least one --images folder")
    real_files = list_images(real_dir, "--real folder")
    fake_files = {name: list_images(folder, f"--images folder ({name})") for name, folder in fakes.items()}
    for name, files in [("real", real_files), *fake_files.items()]:
        where = f"--real folder {real_dir}" if files is real_files else f"--images folder {fakes[name]} ({name})"
        if not files:
            raise UserError(f"{where} has no images (.png/.jpg)")
        if len(files) != len(real_files):
            raise UserError(f"{where} has {count(len(files), 'image')} but --real {real_dir} has {count(len(real_files), 'image')}; "
                            "compare the outputs of the same inputs (one image per real image)")
    masks = None if class_name is None else _class_masks(labels_dir, fake_files, [p.stem for p in real_files], class_name)
    real = set_histogram(real_files, half, size, masks, batch_size, progress, "real")
    hists = {name: set_histogram(files, None, size, masks, batch_size, progress, name) for name, files in fake_files.items()}
    for name, hist in [("real", real), *hists.items()]:
        if hist.pixels == 0:
            where = f" of class {class_name!r}" if class_name else ""
            raise UserError(f"no pixels{where} in the {name} set; pick a class that the label maps contain")
    result = {
        "intersection": {name: hist.intersection(real) for name, hist in hists.items()},
        "bins": {c: {"min": lo, "max": hi, "count": n, "width": (hi - lo) / n} for c, (lo, hi, n) in BINS.items()},
        "counts": {name: {c: h.counts[c].tolist() for c in CHANNELS} for name, h in {"real": real, **hists}.items()},
        "images": {name: h.images for name, h in {"real": real, **hists}.items()},
        "source": {"real": str(real_dir), "images": {name: str(folder) for name, folder in fakes.items()},
                   "real_labels": None if labels_dir is None else str(labels_dir)},
        "half": half, "size": size, "class": class_name,
        "colour_space": "CIE Lab, D65, 2 degree observer (skimage.color.rgb2lab)",
    }
    if plot is not None:
        from p2p_eval.metrics.color_plot import plot_lab_histograms

        plot_lab_histograms(real.counts, {n: h.counts for n, h in hists.items()}, result["intersection"],
                            {c: bin_edges(c) for c in CHANNELS}, plot)
    if json_out is not None:
        write_json(json_out, result)
    return result
