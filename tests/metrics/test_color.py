"""Lab histograms against scikit-image (rgb2lab + numpy.histogram) on real photos; intersection by hand; the
Figure 7 plot's legend, axis and gaps; progress bars only on a terminal."""

from __future__ import annotations

import io
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data
from skimage.color import rgb2lab

from p2p_eval.metrics import color
from p2p_eval.metrics.color import CHANNELS, LabHistogram, bin_edges, histogram_intersection

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: getattr(data, name)() for name in PHOTOS}


def test_lab_gamut_inside_documented_bins() -> None:
    cube = np.stack(np.meshgrid(*[np.arange(0, 256, 5, dtype=np.uint8)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lab = rgb2lab(cube[None])[0]
    for k, c in enumerate(CHANNELS):
        edges = bin_edges(c)
        assert edges[0] <= lab[:, k].min() and lab[:, k].max() <= edges[-1]


@pytest.mark.parametrize("name", PHOTOS)
def test_histogram_equals_numpy_of_skimage(photos: dict[str, np.ndarray], name: str) -> None:
    image = photos[name]
    hist = LabHistogram()
    hist.update(image[None])
    lab = rgb2lab(image)
    for k, c in enumerate(CHANNELS):
        expected, _ = np.histogram(lab[..., k].ravel(), bins=bin_edges(c))
        np.testing.assert_array_equal(hist.counts[c], expected)
    assert hist.pixels == image.shape[0] * image.shape[1]


def test_streaming_merge_mask_and_torch_layout(photos: dict[str, np.ndarray]) -> None:
    image = photos["coffee"]
    rng = np.random.default_rng(0)
    mask = rng.random(image.shape[:2]) < 0.3
    lab = rgb2lab(image)[mask]
    top, bottom = LabHistogram(), LabHistogram()
    top.update(torch.from_numpy(image[:200]).permute(2, 0, 1)[None], torch.from_numpy(mask[:200])[None])
    bottom.update(image[None, 200:], mask[None, 200:])
    merged = top.merge(bottom)
    for k, c in enumerate(CHANNELS):
        np.testing.assert_array_equal(merged.counts[c], np.histogram(lab[:, k], bins=bin_edges(c))[0])
    assert merged.images == 2


def test_intersection_hand_made() -> None:
    assert histogram_intersection([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert histogram_intersection([1, 1, 0, 0], [0, 0, 5, 5]) == 0.0
    # p = (.5, .5, 0), q = (0, .5, .5): overlap only in the middle bin -> 0.5
    assert histogram_intersection([1, 1, 0], [0, 3, 3]) == pytest.approx(0.5)
    # p = (.25, .75), q = (.6, .4): min -> .25 + .4
    assert histogram_intersection([1, 3], [3, 2]) == pytest.approx(0.65)


def test_intersection_of_images() -> None:
    red = np.zeros((1, 8, 8, 3), np.uint8)
    red[..., 0] = 255
    green = np.zeros_like(red)
    green[..., 1] = 255
    h_red, h_green, h_red2 = LabHistogram(), LabHistogram(), LabHistogram()
    h_red.update(red), h_green.update(green), h_red2.update(np.concatenate([red, red]))
    assert h_red.intersection(h_red2) == {"L": 1.0, "a": 1.0, "b": 1.0}
    # red: L 53.24, a 80.09, b 67.20; green: L 87.73, a -86.18, b 83.18 -> every bin differs
    assert h_red.intersection(h_green) == {"L": 0.0, "a": 0.0, "b": 0.0}
    assert LabHistogram.higher_is_better


def test_empty_histogram_raises() -> None:
    with pytest.raises(ValueError):
        LabHistogram().compute()


# --------------------------------------------------------------------------------------------------
# The table's counts against the per-image scikit-image loop.


def _skimage_counts(images: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The independent reference: skimage.color.rgb2lab per image, then numpy.histogram per channel."""
    out = {c: np.zeros(len(bin_edges(c)) - 1, np.int64) for c in CHANNELS}
    for i, image in enumerate(images):
        lab = rgb2lab(image)
        if mask is not None:
            lab = lab[mask[i]]
        for k, c in enumerate(CHANNELS):
            out[c] += np.histogram(lab[..., k].ravel(), bins=bin_edges(c))[0]
    return out


def _edge_colors(count: int) -> np.ndarray:
    """Colours whose L, a or b lies nearest to a bin edge (found by skimage over a colour sample), plus
    every grey (a and b within 0.005 of the edge 0), black (L = 0, the first edge) and white (L = 100, the
    closed last edge): uint8 (n, 3)."""
    rng = np.random.default_rng(1)
    sample = rng.integers(0, 256, (1 << 18, 3), dtype=np.uint8)
    lab = rgb2lab(sample[None])[0]
    near = np.abs(lab - np.round(lab)).min(axis=1)
    picked = sample[np.argsort(near)[:count]]
    greys = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return np.concatenate([picked, greys, [[0, 0, 0], [255, 255, 255]]]).astype(np.uint8)


def test_edge_colors_are_near_edges() -> None:
    lab = rgb2lab(_edge_colors(2000)[None])[0]
    assert np.abs(lab[:2000] - np.round(lab[:2000])).min(axis=1).max() < 2e-3
    greys = lab[2000:2256]
    assert np.abs(greys[:, 1:]).max() < 5e-3  # a and b of greys: just above the edge 0 (white point vs matrix)
    assert lab[-2:, 0].tolist() == pytest.approx([0.0, 100.0])


def test_counts_equal_skimage_on_edge_and_random_colors() -> None:
    rng = np.random.default_rng(2)
    edge = _edge_colors(4000)
    pixels = np.concatenate([edge, rng.integers(0, 256, (64 * 64 * 3 - len(edge), 3), dtype=np.uint8)])
    images = rng.permutation(pixels).reshape(3, 64, 64, 3)
    hist = LabHistogram()
    hist.update(images)
    expected = _skimage_counts(images)
    for c in CHANNELS:
        np.testing.assert_array_equal(hist.counts[c], expected[c])
    assert hist.pixels == images.size // 3 and hist.images == 3
    # white sits on L = 100, the last edge: counted in the last L bin as numpy.histogram does
    white = LabHistogram()
    white.update(np.full((1, 2, 2, 3), 255, np.uint8))
    assert white.counts["L"][-1] == 4


def test_counts_with_strides_masks_and_odd_widths() -> None:
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, (2, 9, 21, 3), dtype=np.uint8)
    mask = rng.random((2, 9, 7)) < 0.5
    cases = [
        (wide[:, :, :7], None),                      # a crop: rows longer than the image
        (wide[:, :, :7], mask),                      # with a mask
        (wide[:, :, 20:], None),                     # width 1
        (np.ascontiguousarray(wide), None),          # contiguous
        (wide[:, ::2, ::3], None),                   # any strides
    ]
    for images, m in cases:
        hist = LabHistogram()
        hist.update(images, m)
        expected = _skimage_counts(images, m)
        for c in CHANNELS:
            np.testing.assert_array_equal(hist.counts[c], expected[c])
    planar = torch.from_numpy(np.ascontiguousarray(wide.transpose(0, 3, 1, 2)))  # (N, 3, H, W): channel planes
    hist = LabHistogram()
    hist.update(planar)
    expected = _skimage_counts(wide)
    for c in CHANNELS:
        np.testing.assert_array_equal(hist.counts[c], expected[c])


def test_a_color_seen_many_times_and_counts_read_between_updates() -> None:
    """A colour seen 512 and one seen 300 times among random ones; counts read between updates, after a pickle
    round trip and after merging (an empty accumulator too) all equal scikit-image's."""
    rng = np.random.default_rng(11)
    pixels = np.concatenate([np.tile([[12, 200, 7]], (512, 1)), np.tile([[255, 255, 255]], (300, 1)),
                             rng.integers(0, 256, (724, 3))]).astype(np.uint8)
    images = rng.permutation(pixels).reshape(6, 16, 16, 3)
    expected = _skimage_counts(images)
    one = LabHistogram()
    for i in range(6):
        one.update(images[i:i + 1])
        if i == 2:
            assert one.pixels == 3 * 256
    restored = pickle.loads(pickle.dumps(one))
    merged = LabHistogram()
    merged.update(images[:4])
    merged.merge(LabHistogram()).merge(_hist(images[4:]))
    for h in (one, restored, merged):
        for c in CHANNELS:
            np.testing.assert_array_equal(h.counts[c], expected[c])
    assert one == restored and merged.images == 6 and _hist(images) != _hist(images[:5])


def _hist(images: np.ndarray) -> LabHistogram:
    h = LabHistogram()
    h.update(images)
    return h


def test_table_entries_are_skimage_bins() -> None:
    """Entry r << 16 | g << 8 | b of the table holds the L / a / b bins of that colour, as numpy.histogram puts
    rgb2lab's value (edge colours, greys, black and white)."""
    colors = _edge_colors(500)
    lab = rgb2lab(colors[None])[0]
    r, g, b = (colors[:, k].astype(np.int64) for k in range(3))
    entry = color.color_table()[r << 16 | g << 8 | b]
    for k, c in enumerate(CHANNELS):
        bins = np.array([np.histogram([v], bins=bin_edges(c))[0].argmax() for v in lab[:, k]])
        np.testing.assert_array_equal((entry >> (8 * k)) & 255, bins)


@pytest.mark.slow
def test_table_is_cached_checked_and_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached table whose bytes no longer match its sha256 is not used: it is rebuilt, the same, and cached
    again; a cache that cannot be written leaves the table in the process."""
    built = color.color_table()
    source = color.table_path()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = color.table_path()
    assert cached.parent == tmp_path / "p2p-eval" / "color" and cached.name == source.name
    cached.parent.mkdir(parents=True)
    shutil.copy(source, cached)
    shutil.copy(source.with_suffix(".sha256"), cached.with_suffix(".sha256"))
    with open(cached, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\xff\xff\xff\xff")
    color.color_table.cache_clear()
    try:
        np.testing.assert_array_equal(color.color_table(), built)
        assert cached.read_bytes() == source.read_bytes()  # rewritten
        color.color_table.cache_clear()
        np.testing.assert_array_equal(color.color_table(), built)  # now from the rewritten cache
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
        (tmp_path / "file").write_text("not a folder")
        color.color_table.cache_clear()
        np.testing.assert_array_equal(color.color_table(), built)
    finally:
        color.color_table.cache_clear()


def test_rejects_grey_rgba_and_16_bit_arrays() -> None:
    """Arrays must be uint8 RGB; files in other forms are converted by the CLI's decoder (see the CLI test)."""
    for bad in (np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 4, 4), np.uint8), np.zeros((1, 4, 4, 3), np.uint16)):
        with pytest.raises(ValueError, match="uint8"):
            LabHistogram().update(bad)


@pytest.mark.realdata
def test_counts_equal_skimage_on_cityscapes(shared_data: Path) -> None:
    from p2p_eval.imageio import list_images
    from p2p_eval.metrics.color import load_photo

    files = list_images(shared_data / "cityscapes" / "val")[:12]
    photos = torch.stack([load_photo(p, "A") for p in files])
    hist = LabHistogram()
    for i in range(0, len(photos), 5):
        hist.update(photos[i:i + 5])
    expected = _skimage_counts(photos.permute(0, 2, 3, 1).numpy())
    for c in CHANNELS:
        np.testing.assert_array_equal(hist.counts[c], expected[c])


def _jpeg(pixels: np.ndarray, **save: object) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", **save)
    return out.getvalue()


def _torchvision_half(data: bytes, half: str | None) -> np.ndarray:
    """torchvision's decode of ``data`` (RGB), whole or the A / B half, as (1, H, W, 3)."""
    from torchvision.io import ImageReadMode, decode_image

    image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    image = image.permute(1, 2, 0).numpy()
    w = image.shape[1]
    image = image if half is None else image[:, : w // 2] if half == "A" else image[:, w // 2:]
    return np.ascontiguousarray(image)[None]


def test_compare_sets_counts_jpegs_and_pngs_as_the_skimage_loop(tmp_path: Path) -> None:
    """AB JPEGs of every chroma subsampling, grey and progressive, read by half; fakes mixed JPEG / PNG: the
    bin counts are those of scikit-image's loop over torchvision's decode of the same files."""
    from PIL import Image

    from p2p_eval.metrics.color import compare_sets

    rng = np.random.default_rng(9)
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    saves = [{"subsampling": 0}, {"subsampling": 1}, {"subsampling": 2}, {"progressive": True}, {}]
    for i, save in enumerate(saves):
        ab = np.clip(np.cumsum(rng.integers(-6, 7, (37, 100, 3)), axis=1) + 120, 0, 255).astype(np.uint8)
        (tmp_path / "real" / f"{i}.jpg").write_bytes(_jpeg(ab[..., 1] if i == 4 else ab, **save))
        fake = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
        if i % 2:
            Image.fromarray(fake).save(tmp_path / "fake" / f"{i}.png")
        else:
            (tmp_path / "fake" / f"{i}.jpg").write_bytes(_jpeg(fake))
    for half in ("A", "B"):
        result = compare_sets(tmp_path / "real", {"fake": tmp_path / "fake"}, half=half, progress=False)
        real = _skimage_counts(np.concatenate([_torchvision_half((tmp_path / "real" / f"{i}.jpg").read_bytes(), half)
                                               for i in range(5)]))
        fake = _skimage_counts(np.concatenate([_torchvision_half(p.read_bytes(), None)
                                               for p in sorted((tmp_path / "fake").iterdir())]))
        for c in CHANNELS:
            assert result["counts"]["real"][c] == real[c].tolist()
            assert result["counts"]["fake"][c] == fake[c].tolist()
        assert result["images"] == {"real": 5, "fake": 5}
        # the folders are named as the flags that gave them (--real, --images), not "fake"
        assert result["source"] == {"real": str(tmp_path / "real"), "images": {"fake": str(tmp_path / "fake")},
                                    "real_labels": None}
        assert set(result) & {"fake", "real"} == set()


def test_broken_jpeg_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    from p2p_eval.errors import UserError
    from p2p_eval.metrics.color import compare_sets

    data = _jpeg(np.random.default_rng(8).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for name in ("real", "fake"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(data)
    (tmp_path / "fake" / "a.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cannot read image .*a\.jpg"):
        compare_sets(tmp_path / "real", {"fake": tmp_path / "fake"}, progress=False)


def test_figure7_plot_one_legend_log10_axis_and_gaps() -> None:
    """One legend for the three panels with each set's intersections, log10 on the axis, an empty bin a gap (NaN)
    explained in the caption; the plotted values are log10 of the hand-computed bin shares."""
    from p2p_eval.metrics.color_plot import CAPTION, lab_figure, log10_share

    counts = np.array([0, 3, 1, 0, 4])
    np.testing.assert_array_equal(np.isnan(log10_share(counts)), [True, False, False, True, False])
    np.testing.assert_allclose(log10_share(counts)[[1, 2, 4]], np.log10([3 / 8, 1 / 8, 4 / 8]))
    rng = np.random.default_rng(3)
    real, fake = LabHistogram(), LabHistogram()
    real.update(rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8))
    fake.update(rng.integers(100, 156, (2, 16, 16, 3), dtype=np.uint8))
    scores = {"L1": real.intersection(fake)}
    fig = lab_figure(real.counts, {"L1": fake.counts}, scores, {c: bin_edges(c) for c in CHANNELS})
    try:
        assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert labels == [f"L1 (intersection L {scores['L1']['L']:.2f}, a {scores['L1']['a']:.2f}, "
                          f"b {scores['L1']['b']:.2f})", "ground truth"]
        assert [ax.get_ylabel() for ax in fig.axes] == ["log10 P(L)", "log10 P(a)", "log10 P(b)"]
        assert "Gaps: bins with no pixels" in CAPTION and any(t.get_text() == CAPTION for t in fig.texts)
        line = fig.axes[0].get_lines()[0]  # L1's L panel: NaN exactly where the set has no pixels
        np.testing.assert_array_equal(np.isnan(line.get_ydata()), fake.counts["L"] == 0)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A bar asked for (progress=True) is drawn on a terminal and left out when stderr is a file or pipe;
    progress=False (``--quiet``) leaves it out on a terminal too."""
    from p2p_eval.imageio import write_png

    for i in range(3):
        write_png(tmp_path / f"{i}.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    files = sorted(tmp_path.glob("*.png"))
    color.set_histogram(files, progress=True, name="captured")
    assert capsys.readouterr().err == ""  # pytest's capture is not a terminal
    for progress in (True, False):
        terminal = _Terminal()
        monkeypatch.setattr("sys.stderr", terminal)
        color.set_histogram(files, progress=progress, name="tty")
        monkeypatch.undo()
        assert ("Lab tty" in terminal.getvalue()) is progress
