"""Marginal colour distributions in CIE Lab and their histogram intersection (the paper's Figure 7).

Reference: pix2pix (Isola et al., CVPR 2017), section 4.2 "Colorfulness" and Figure 7: the marginal
distributions of L, a and b over the generated Cityscapes photos, plotted as log probability with the
ground truth dotted, and scored by histogram intersection against the ground truth.

Conversion: sRGB -> CIE Lab exactly as scikit-image's ``skimage.color.rgb2lab`` defines it (illuminant
D65, 2 degree observer, white (0.95047, 1, 1.08883), sRGB matrix ``skimage.color.colorconv.xyz_from_rgb``,
the 0.04045 / 12.92 / 2.4 sRGB curve and the 0.008856 / 7.787 Lab knee).  :func:`rgb_to_lab` is that
conversion in float64 numpy.  The histograms do not convert pixels at all: every one of the 2^24 uint8
sRGB colours is converted once by ``skimage.color.rgb2lab`` and binned (a cached table), counting an image
adds one per pixel to a per-colour counter, and the colours seen are turned into bins through the table
when the counts are read (:mod:`p2p_eval.metrics.lab_bins`).  So the counts equal the per-image
scikit-image loop's (``rgb2lab`` then ``numpy.histogram``) by construction.

Fixed bins, one unit of the channel per bin (the resolution of the paper's plots):

==========  ===============  ======  ======================================================
channel     range            bins    values the sRGB gamut reaches (all 2^24 colours)
==========  ===============  ======  ======================================================
L           [0, 100]         100     [0, 100]
a           [-128, 128]      256     [-86.18, 98.23]
b           [-128, 128]      256     [-107.86, 94.48]
==========  ===============  ======  ======================================================

Bin ``i`` holds ``lo + i <= v < lo + i + 1``; the last bin also holds ``v == hi`` (``numpy.histogram``'s
convention), so L = 100 (white) lands in the last L bin.  Histograms are integer bin counts, so sets of
any size stream through :meth:`LabHistogram.update` and partial results :meth:`~LabHistogram.merge`.

Histogram intersection ``sum_i min(p_i, q_i)`` of the normalised histograms (Swain & Ballard 1991) is in
[0, 1]; 1 means identical distributions; higher is better.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from pathlib import Path

import numpy as np
import torch

from p2p_eval.errors import UserError, file_list, unknown_name

CHANNELS = ("L", "a", "b")
#: (low edge, high edge, number of bins) per channel; every bin is one unit wide.
BINS: dict[str, tuple[float, float, int]] = {"L": (0.0, 100.0, 100), "a": (-128.0, 128.0, 256), "b": (-128.0, 128.0, 256)}

# scikit-image's constants (skimage.color.colorconv): sRGB primaries -> XYZ and the D65 / 2 degree white.
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def _srgb_to_linear_table() -> np.ndarray:
    """Linear-light value of each of the 256 sRGB codes, as ``skimage.color.rgb2xyz`` computes it."""
    v = np.arange(256, dtype=np.float64) / 255.0
    out = v.copy()
    high = v > 0.04045
    out[high] = np.power((v[high] + 0.055) / 1.055, 2.4)
    out[~high] /= 12.92
    return out


_LINEAR = _srgb_to_linear_table()


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) -> float64 CIE Lab (..., 3); matches ``skimage.color.rgb2lab`` (D65, 2 deg)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_lab needs uint8 (..., 3) RGB, got {rgb.dtype} {rgb.shape}")
    xyz = np.take(_LINEAR, rgb) @ XYZ_FROM_RGB.T
    xyz /= D65_WHITE
    f = np.cbrt(xyz)
    low = xyz <= 0.008856
    if low.any():
        f[low] = 7.787 * xyz[low] + 16.0 / 116.0
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def bin_edges(channel: str) -> np.ndarray:
    """The bin edges of ``channel`` (``L``, ``a`` or ``b``), for ``numpy.histogram`` and plots."""
    lo, hi, n = BINS[channel]
    return np.linspace(lo, hi, n + 1)


def _as_nhwc(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """A batch as uint8 (N, H, W, 3) numpy: accepts that, or a torch uint8 (N, 3, H, W) / (3, H, W)."""
    if isinstance(images, torch.Tensor):
        if images.ndim not in (3, 4) or images.shape[-3] != 3:
            raise ValueError(f"expected a (N, 3, H, W) tensor, got {tuple(images.shape)}")
        t = images.detach().cpu() if images.requires_grad or images.device.type != "cpu" else images
        a = t.numpy()  # numpy's transpose costs a third of torch's permute per image
        images = a.transpose(1, 2, 0) if a.ndim == 3 else a.transpose(0, 2, 3, 1)
    arr = np.asarray(images)
    arr = arr[None] if arr.ndim == 3 else arr
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3) RGB images, got {arr.dtype} {arr.shape}")
    return arr


class LabHistogram:
    """Streaming L / a / b bin counts over a set of uint8 RGB images (optionally inside masks).

    ``update`` adds a batch, ``merge`` adds another accumulator's counts (other batches, processes),
    ``compute`` returns the normalised histograms.  The score built on it, :func:`histogram_intersection`
    against the real set, is higher-is-better.  ``counts`` (``{"L": int64 array, "a": ..., "b": ...}``)
    and ``images`` are the state; reading ``counts`` first folds in the pixels counted per colour since
    the last read (:class:`p2p_eval.metrics.lab_bins.ColourCounts`).
    """

    higher_is_better = True

    def __init__(self, counts: dict[str, np.ndarray] | None = None, images: int = 0) -> None:
        self._counts = counts if counts is not None else {c: np.zeros(BINS[c][2], np.int64) for c in CHANNELS}
        self.images = images
        self._colours = None  # ColourCounts, made on the first update that uses the C loop

    @property
    def counts(self) -> dict[str, np.ndarray]:
        """Bin counts per channel (int64 arrays of 100 / 256 / 256 bins), up to date."""
        if self._colours is not None:
            bins = self._colours.take_bins()
            for k, c in enumerate(CHANNELS):
                self._counts[c] += bins[k, :BINS[c][2]]
        return self._counts

    @counts.setter
    def counts(self, value: dict[str, np.ndarray]) -> None:
        self._colours = None
        self._counts = value

    def __repr__(self) -> str:
        return f"LabHistogram(images={self.images}, pixels={self.pixels})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabHistogram):
            return NotImplemented
        return self.images == other.images and all(np.array_equal(self.counts[c], other.counts[c]) for c in CHANNELS)

    def __getstate__(self) -> dict:
        return {"counts": self.counts, "images": self.images}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["counts"], state["images"])

    @property
    def pixels(self) -> int:
        """Number of pixels counted so far."""
        return int(self.counts["L"].sum())

    def update(self, images: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor | None = None) -> None:
        """Add a batch: uint8 (N, H, W, 3) numpy or (N, 3, H, W) torch; ``mask`` bool (N, H, W) selects pixels."""
        from p2p_eval.metrics import lab_bins

        batch = _as_nhwc(images)
        m = None
        if mask is not None:
            m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            m = m[None] if m.ndim == 2 else m
            if m.shape != batch.shape[:3]:
                raise ValueError(f"mask shape {m.shape} does not match the images {batch.shape[:3]}")
            m = m.astype(bool, copy=False)
        if self._colours is not None or lab_bins.kernel() == "c":  # an accumulator keeps the loop it began with
            if self._colours is None:
                self._colours = lab_bins.ColourCounts()
            self._colours.add(batch, m)
        else:
            counts = lab_bins.count_bins(batch, m)
            for k, c in enumerate(CHANNELS):
                self._counts[c] += counts[k, :BINS[c][2]]
        self.images += batch.shape[0]

    def update_jpeg(self, data: bytes, half: str | None = None, size: int | None = None) -> bool:
        """Add one JPEG file (its bytes), counted while it is decoded (:mod:`p2p_eval.metrics.jpeg_colours`; the
        same pixels as :func:`load_photo` gives): the whole image, or the A / B ``half`` of an AB pair, which must
        be ``size`` x ``size`` when ``size`` is given.  False when that path does not take it: nothing was
        counted; decode the file and :meth:`update` it.  A broken file raises ValueError."""
        from p2p_eval.metrics import jpeg_colours, lab_bins

        if self._colours is None:
            if lab_bins.kernel() != "c" or not jpeg_colours.available():
                return False
            self._colours = lab_bins.ColourCounts()
        if not self._colours.add_jpeg(data, half, size):
            return False
        self.images += 1
        return True

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
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms have different bins: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("cannot intersect an empty histogram")
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def bins_description() -> dict[str, dict[str, float | int]]:
    """The fixed bins as JSON: ``{"L": {"min", "max", "count", "width"}, ...}``."""
    return {c: {"min": lo, "max": hi, "count": n, "width": (hi - lo) / n} for c, (lo, hi, n) in BINS.items()}


def intersections(real: LabHistogram, fakes: Mapping[str, LabHistogram]) -> dict[str, dict[str, float]]:
    """``{SET: {"L": x, "a": y, "b": z}}``: every fake set's intersection with the real set."""
    return {name: hist.intersection(real) for name, hist in fakes.items()}


# --------------------------------------------------------------------------------------------------
# Folders of images: the `p2p-eval color` command.


def load_photo(path: Path, half: str | None = None, size: int | None = None) -> torch.Tensor:
    """uint8 (3, H, W) RGB of ``path``; ``half`` A / B takes the left / right half of an AB image;
    ``size`` resizes to size x size (bilinear, antialiased)."""
    import torchvision.transforms.v2.functional as F

    from p2p_eval.data.aligned import ab_half
    from p2p_eval.imageio import read_image

    image = read_image(path)
    if half is not None:
        image = ab_half(image, path, half)
    if size is not None and tuple(image.shape[1:]) != (size, size):
        image = F.resize(image, [size, size], antialias=True)
    return image


def _class_masks(labels_dir: Path, stems: list[str], class_name: str) -> dict[str, np.ndarray]:
    """Boolean masks of one Cityscapes train class, per image stem, from the label maps in ``labels_dir``."""
    from p2p_eval.data.cityscapes import TRAIN_CLASSES, load_label_map
    from p2p_eval.imageio import list_images

    if class_name not in TRAIN_CLASSES:
        raise unknown_name("Cityscapes class", class_name, TRAIN_CLASSES)
    class_id = TRAIN_CLASSES.index(class_name)
    labels = {p.stem: p for p in list_images(labels_dir, "--real-labels folder")}
    missing = [s for s in stems if s not in labels]
    if missing:
        raise UserError(f"{labels_dir} has no label map for {file_list(missing)}; give one label PNG per real image, same name")
    return {s: load_label_map(labels[s]) == class_id for s in stems}


def _count_jpeg(hist: LabHistogram, path: Path, half: str | None, size: int | None) -> bool:
    """:meth:`LabHistogram.update_jpeg` on a ``.jpg`` / ``.jpeg`` file that is a JPEG (by its first bytes); False
    for other files, or when that path does not take it."""
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return False
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UserError(f"image not found: {path}") from exc
    if not data.startswith(b"\xff\xd8\xff"):
        return False
    try:
        return hist.update_jpeg(data, half, size)
    except ValueError as exc:
        raise UserError(f"cannot read image {path}: {exc}; is it a valid PNG or JPEG?") from exc


def _set_histogram(files: list[Path], name: str, half: str | None, size: int | None,
                   masks: dict[str, np.ndarray] | None, batch_size: int, progress: bool = True) -> LabHistogram:
    """Histogram of one folder's images, batch by batch, with a progress bar unless ``progress`` is False."""
    from tqdm import tqdm

    from p2p_eval.data.cityscapes import resize_nearest
    from p2p_eval.metrics import jpeg_colours, lab_bins

    # the JPEG path only where it can run (else each JPEG would be read twice for nothing)
    jpeg = masks is None and lab_bins.kernel() == "c" and jpeg_colours.available()
    hist = LabHistogram()
    for start in tqdm(range(0, len(files), batch_size), desc=f"Lab {name}", unit="batch", leave=False,
                      disable=not progress):
        # each image is counted as it is decoded, while its pixels are still in the CPU cache: a JPEG band by
        # band inside libjpeg where possible, else right after the whole image is decoded (benchmarks/perf/color.py)
        for path in files[start:start + batch_size]:
            if jpeg and _count_jpeg(hist, path, half, size):
                continue
            image = load_photo(path, half, size)
            mask = None if masks is None else resize_nearest(masks[path.stem].astype(np.uint8), tuple(image.shape[1:])) > 0
            hist.update(image, mask)
    hist.counts  # noqa: B018 - fold the colour counts into bins now; the counter goes back to the pool for the next set
    return hist


def compare_sets(real_dir: str | Path, fakes: Mapping[str, str | Path], plot: str | Path | None = None,
                 json_out: str | Path | None = None, size: int | None = None, half: str | None = None,
                 class_name: str | None = None, labels_dir: str | Path | None = None,
                 batch_size: int = 16, progress: bool = True) -> dict:
    """Lab histograms of the real folder and each generated-image folder, their intersections, plot, JSON.

    ``half`` (A / B) reads the real folder as AB pairs; ``size`` resizes every image; ``class_name`` with
    ``labels_dir`` (one label map per real image, same stem) restricts both sets to that Cityscapes class,
    the generated image of stem S using the label map of S; ``progress=False`` shows no bars.  Returns
    ``{"intersection": {SET: {"L", "a", "b"}},
    "bins": ..., "counts": {SET: {"L": [...], ...}}, "images": {SET: n}, "real": ..., "class": ...}``.
    """
    from p2p_eval.fsutil import write_json
    from p2p_eval.imageio import list_images

    if not fakes:
        raise UserError("give at least one --images folder")
    real_files = list_images(real_dir, "--real folder")
    if not real_files:
        raise UserError(f"--real folder {real_dir} has no images (.png/.jpg); point it at a folder of photos")
    fake_files: dict[str, list[Path]] = {}
    for name, folder in fakes.items():
        files = list_images(folder, f"--images folder ({name})")
        if not files:
            raise UserError(f"--images folder {folder} ({name}) has no images (.png/.jpg)")
        if len(files) != len(real_files):
            raise UserError(f"--images folder {folder} ({name}) has {len(files)} images but --real {real_dir} has "
                            f"{len(real_files)}; compare the outputs of the same inputs (one image per real image)")
        fake_files[name] = files
    masks = None
    if class_name is not None:
        if labels_dir is None:
            raise UserError(f"--class {class_name} needs --real-labels DIR (the label maps of the real images)")
        masks = _class_masks(Path(labels_dir), [p.stem for p in real_files], class_name)
        for name, files in fake_files.items():
            stray = [p.name for p in files if p.stem not in masks]
            if stray:
                raise UserError(f"--images {fakes[name]} ({name}) has images with no real counterpart of the same name: "
                                f"{file_list(stray)}; with --class, file names must match the real ones")
    real = _set_histogram(real_files, "real", half, size, masks, batch_size, progress)
    hists = {name: _set_histogram(files, name, None, size, masks, batch_size, progress)
             for name, files in fake_files.items()}
    for name, hist in {"real": real, **hists}.items():
        if hist.pixels == 0:
            where = f" of class {class_name!r}" if class_name else ""
            raise UserError(f"no pixels{where} in the {name} set; pick a class that the label maps contain")
    result = {
        "intersection": intersections(real, hists),
        "bins": bins_description(),
        "counts": {name: {c: h.counts[c].tolist() for c in CHANNELS} for name, h in {"real": real, **hists}.items()},
        "images": {name: h.images for name, h in {"real": real, **hists}.items()},
        "real": str(real_dir),
        "fake": {name: str(folder) for name, folder in fakes.items()},
        "half": half, "size": size, "class": class_name,
        "colour_space": "CIE Lab, D65, 2 degree observer (skimage.color.rgb2lab)",
    }
    if plot is not None:
        plot_lab_histograms(real, hists, result["intersection"], plot)
    if json_out is not None:
        write_json(json_out, result)
    return result


def plot_lab_histograms(real: LabHistogram, fakes: Mapping[str, LabHistogram],
                        scores: Mapping[str, Mapping[str, float]], out: str | Path, title: str | None = None) -> Path:
    """Figure 7 of the paper: one panel per channel, log probability against value, the real
    distribution dotted black, one solid line per fake set, its intersection score in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from p2p_eval.fsutil import atomic_write_bytes

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))
    real_p = real.compute()
    colours = plt.get_cmap("tab10").colors
    for ax, c in zip(axes, CHANNELS):
        edges = bin_edges(c)
        centres = (edges[:-1] + edges[1:]) / 2
        for k, (name, hist) in enumerate(fakes.items()):
            ax.plot(centres, _log(hist.compute()[c]), color=colours[k % 10], lw=1.6,
                    label=f"{name} ({scores[name][c]:.2f})")
        ax.plot(centres, _log(real_p[c]), color="black", ls=":", lw=2.0, label="ground truth")
        used = np.nonzero(real.counts[c] + sum(h.counts[c] for h in fakes.values()))[0]
        ax.set_xlim(edges[max(used[0] - 2, 0)], edges[min(used[-1] + 3, len(edges) - 1)])
        ax.set_xlabel(c)
        ax.set_ylabel(f"log P({c})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="set (histogram intersection)", title_fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.suptitle(title or "Lab colour distributions (log probability); ground truth dotted")
    fig.tight_layout()
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(out, buffer.getvalue())


def _log(p: np.ndarray) -> np.ndarray:
    """Natural log of probabilities; empty bins become NaN (gaps in the plot)."""
    with np.errstate(divide="ignore"):
        out = np.log(p)
    out[~np.isfinite(out)] = np.nan
    return out
