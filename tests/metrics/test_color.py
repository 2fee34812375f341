"""Lab histograms against scikit-image (rgb2lab + numpy.histogram) on real photos; intersection by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.color import rgb2lab

from p2p_eval.metrics.color import CHANNELS, LabHistogram, bin_edges, histogram_intersection, rgb_to_lab

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: getattr(data, name)() for name in PHOTOS}


@pytest.mark.parametrize("name", PHOTOS)
def test_lab_matches_skimage(photos: dict[str, np.ndarray], name: str) -> None:
    np.testing.assert_allclose(rgb_to_lab(photos[name]), rgb2lab(photos[name]), rtol=0, atol=1e-9)


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
# The fast path (colour table + C or numpy counting loop) against the per-image scikit-image loop.

from pathlib import Path  # noqa: E402

from p2p_eval.metrics import lab_bins  # noqa: E402


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


def _edge_colours(count: int) -> np.ndarray:
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


@pytest.fixture(params=["c", "numpy"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with each counting loop; the C one is skipped where no C compiler is available."""
    monkeypatch.setenv("P2P_EVAL_COLOR_KERNEL", "numpy")
    if request.param == "c":
        monkeypatch.setenv("P2P_EVAL_COLOR_KERNEL", "auto")
        if lab_bins.kernel() != "c":
            pytest.skip("no C compiler: only the numpy loop runs here")
    return request.param


def test_edge_colours_are_near_edges() -> None:
    lab = rgb2lab(_edge_colours(2000)[None])[0]
    assert np.abs(lab[:2000] - np.round(lab[:2000])).min(axis=1).max() < 2e-3
    greys = lab[2000:2256]
    assert np.abs(greys[:, 1:]).max() < 5e-3  # a and b of greys: just above the edge 0 (white point vs matrix)
    assert lab[-2:, 0].tolist() == pytest.approx([0.0, 100.0])


def test_fast_path_equals_skimage_on_edge_and_random_colours(kernel: str) -> None:
    rng = np.random.default_rng(2)
    edge = _edge_colours(4000)
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


def test_fast_path_strides_masks_and_odd_widths(kernel: str) -> None:
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, (2, 9, 21, 3), dtype=np.uint8)
    mask = rng.random((2, 9, 7)) < 0.5
    cases = [
        (wide[:, :, :7], None),                      # a crop: rows longer than the image
        (wide[:, :, :7], mask),                      # with a mask
        (wide[:, :, 20:], None),                     # width 1, the row's last pixel read byte by byte
        (np.ascontiguousarray(wide), None),          # the buffer's very last pixel
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


def _before_guard_page(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, object]:
    """Random uint8 pixels of ``shape`` ending exactly where an unreadable page begins (and the mapping,
    to keep alive): any read past the array's last byte kills the process."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    size = int(np.prod(shape))
    pages = -(-size // page)
    region = mmap.mmap(-1, (pages + 1) * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(base + pages * page, page, 0) == 0  # PROT_NONE
    array = np.frombuffer(region, np.uint8, count=size, offset=pages * page - size).reshape(shape)
    array[...] = rng.integers(0, 256, shape, dtype=np.uint8)
    return array, region


@pytest.fixture(params=["portable", "avx2", "avx512"])
def key_loop(request: pytest.FixtureRequest) -> object:
    """The C library with its portable, AVX2 or AVX-512 slot loop selected (skipped where the CPU lacks it)."""
    if lab_bins.kernel() != "c":
        pytest.skip("no C compiler: only the numpy loop runs here")
    lib = lab_bins._STATE["lib"]
    level = lab_bins.SLOT_LOOPS.index(request.param)
    if lib.p2p_colour_simd(level) != level:
        lib.p2p_colour_simd(2)
        pytest.skip(f"this CPU has no {request.param}")
    yield lib
    lib.p2p_colour_simd(2)  # the best the CPU has, as on first use


@pytest.mark.parametrize("width", [1, 7, 8, 9, 15, 16, 17, 50, 127, 128, 129, 300])
def test_c_loop_reads_nothing_past_the_image(width: int, key_loop: object) -> None:
    """The C loop reads image rows ahead of the one it counts and makes the slots of 8 pixels from two 16-byte
    loads (AVX2) or of 16 from one masked 48-byte load (AVX-512): on images that end at an unreadable page,
    of widths around those sizes, it must stay inside."""
    rng = np.random.default_rng(width)
    packed, keep = _before_guard_page((2, 3, width, 3), rng)  # interleaved RGB: the 4-byte-load path
    planar, keep2 = _before_guard_page((2, 3, 3, width), rng)  # channel planes: the strided path
    for images in (packed, planar.transpose(0, 2, 3, 1)):
        hist = LabHistogram()
        hist.update(images)
        expected = _skimage_counts(np.ascontiguousarray(images))
        for c in CHANNELS:
            np.testing.assert_array_equal(hist.counts[c], expected[c])
    del keep, keep2


def _slot(images: np.ndarray) -> np.ndarray:
    """The C loop's counter slot of each pixel, along the grey axis: g + 256 (b - g mod 256) + 65536 (r - g mod 256)
    (lab_bins.C_SOURCE)."""
    r, g, b = (images[..., k].astype(np.int64).ravel() for k in range(3))
    return g + 256 * np.mod(b - g, 256) + 65536 * np.mod(r - g, 256)


@pytest.mark.parametrize("mark", [1, 0])
def test_c_colour_counters_equal_numpy_bincount(key_loop: object, mark: int) -> None:
    """The C loop's per-colour counters (uint8 + 256 per wrap) against numpy.bincount of the slots, on widths
    around the 8- and 16-pixel steps of the AVX2 and AVX-512 loops and across the 2048-pixel blocks (rows
    split in parts, several blocks of whole rows, a last block of fewer rows), crops of wider rows (row
    stride larger than the row) and batches of two; with marks, exactly the 256-slot blocks of the colours
    seen are marked, and the wrapped counts' 4096-slot blocks always.  A few colours dominate (as in
    photos), so many counters wrap, some more than once."""
    rng = np.random.default_rng(9)
    palette = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    arrays = lab_bins._Counters()
    cc, dirty, big, bigmark = arrays.arrays
    slots = []
    sizes = [(3, w) for w in (1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 1023, 1024, 1025, 2047, 2048, 2049, 4100)]
    for height, width in sizes + [(45, 100), (700, 3), (5, 2049)]:
        wide = palette[rng.integers(0, 40, (2, height, width + 5))]
        wide[:, 1, ::3] = rng.integers(0, 256, (2, -(-(width + 5) // 3), 3), dtype=np.uint8)
        images = wide[:, :, 2:width + 2]  # a crop: rows of width + 5 pixels
        slots.append(_slot(images))
        sn, sh, sw, sc = images.strides
        key_loop.p2p_colour_count(images.ctypes.data, 2, height, width, sn, sh, sw, sc, None, 0, 0, 0,
                                  arrays.cc, arrays.dirty, arrays.big, arrays.bigmark, mark)
        seen = np.concatenate(slots)
        expected = np.bincount(seen, minlength=1 << 24)
        np.testing.assert_array_equal(cc.astype(np.int64) + big, expected, err_msg=f"width {width}")
        assert (big % 256 == 0).all()
        marked = np.zeros(1 << 16, np.uint8)
        marked[np.unique(seen >> 8)] = 1
        np.testing.assert_array_equal(dirty, marked if mark else 0, err_msg=f"width {width}")
        wrapped = np.zeros(1 << 12, np.uint8)
        wrapped[np.flatnonzero(expected >= 256) >> 12] = 1
        np.testing.assert_array_equal(bigmark, wrapped, err_msg=f"width {width}")
    assert expected.max() > 512  # some counters wrapped more than once


@pytest.mark.parametrize("marked", [1 << 21, 0])
def test_wrapped_counters_reach_the_bins(key_loop: object, marked: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counters are uint8: a colour seen exactly 512 times leaves 0 in its counter and 512 in the wrapped
    counts, one seen 300 times 44 and 256; both must reach the bins, after a flush of marked blocks and after
    a full scan."""
    monkeypatch.setattr(lab_bins.ColourCounts, "_MARKED", marked)
    rng = np.random.default_rng(11)
    pixels = np.concatenate([np.tile([[12, 200, 7]], (512, 1)), np.tile([[255, 255, 255]], (300, 1)),
                             rng.integers(0, 256, (212, 3))]).astype(np.uint8)
    images = rng.permutation(pixels).reshape(4, 16, 16, 3)
    hist = LabHistogram()
    hist.update(images[:1])
    hist.update(images[1:])
    expected = _skimage_counts(images)
    for c in CHANNELS:
        np.testing.assert_array_equal(hist.counts[c], expected[c])


def test_flush_after_unmarked_counts_scans_every_counter(key_loop: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``_MARKED`` pixels the loop stops marking blocks and the flush scans all counters: the bins must
    be the same as scikit-image's whether a flush comes before that point, after it or across it."""
    monkeypatch.setattr(lab_bins.ColourCounts, "_MARKED", 600)
    rng = np.random.default_rng(10)
    images = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    expected = _skimage_counts(images)
    seen = LabHistogram()
    seen.update(images[:2])  # 512 pixels, marked
    assert seen._colours._pending <= 600
    first = {c: seen.counts[c].copy() for c in CHANNELS}  # a flush of marked blocks
    seen.update(images[2:3])
    seen.update(images[3:])  # 768 pixels after the flush: past 600, unmarked
    assert seen._colours._pending > 600
    early = _skimage_counts(images[:2])
    for c in CHANNELS:
        np.testing.assert_array_equal(first[c], early[c])
        np.testing.assert_array_equal(seen.counts[c], expected[c])
    again = LabHistogram()  # the pooled counter after a full scan: zeroed, marks cleared
    again.update(images[:1])
    for c in CHANNELS:
        np.testing.assert_array_equal(again.counts[c], _skimage_counts(images[:1])[c])


def test_deferred_counts_read_between_updates_pickle_and_overflow_flush(kernel: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    expected = _skimage_counts(images)
    one = LabHistogram()
    for i in range(6):
        one.update(images[i:i + 1])
        if i == 2:
            assert one.pixels == 3 * 256  # reading folds in what was counted so far
    restored = pickle.loads(pickle.dumps(one))
    monkeypatch.setattr(lab_bins.ColourCounts, "_LIMIT", 700)  # flush every two images of 256 pixels
    small = LabHistogram()
    small.update(images)
    merged = LabHistogram()
    merged.update(images[:4])
    merged.merge(LabHistogram()).merge(_hist(images[4:]))
    for h in (one, restored, small, merged):
        for c in CHANNELS:
            np.testing.assert_array_equal(h.counts[c], expected[c])
    assert one == restored and merged.images == 6


def _hist(images: np.ndarray) -> LabHistogram:
    h = LabHistogram()
    h.update(images)
    return h


@pytest.mark.slow
def test_table_is_cached_checked_and_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached table whose bytes no longer match its sha256 is not used: it is rebuilt, the same."""
    import shutil

    built = lab_bins.load_table()  # the user's cache (built here if absent)
    source = lab_bins.cache_dir() / f"lab-bins-{lab_bins._table_key()}.npy"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(lab_bins, "_STATE", {})
    cached = lab_bins.cache_dir() / source.name
    cached.parent.mkdir(parents=True)
    if source.exists() and source.with_suffix(".sha256").exists():
        shutil.copy(source, cached)
        shutil.copy(source.with_suffix(".sha256"), cached.with_suffix(".sha256"))
    else:  # the user's cache is not writable: make one here
        lab_bins.load_table()
        monkeypatch.setattr(lab_bins, "_STATE", {})
    with open(cached, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\xff\xff\xff\xff")
    monkeypatch.setattr(lab_bins, "_STATE", {})
    again = lab_bins.load_table()
    np.testing.assert_array_equal(again, built)
    colours = _edge_colours(500)
    lab = rgb2lab(colours[None])[0]
    entry = again[_slot(colours)]
    for k, c in enumerate(CHANNELS):
        bins = np.array([np.histogram([v], bins=bin_edges(c))[0].argmax() for v in lab[:, k]])
        np.testing.assert_array_equal((entry >> (8 * k)) & 255, bins)
    monkeypatch.setattr(lab_bins, "_STATE", {})
    np.testing.assert_array_equal(lab_bins.load_table(), built)  # now from the rewritten cache


def test_rejects_grey_rgba_and_16_bit_arrays() -> None:
    """Arrays must be uint8 RGB; files in other forms are converted by the CLI's decoder (see the CLI test)."""
    for bad in (np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 4, 4), np.uint8), np.zeros((1, 4, 4, 3), np.uint16)):
        with pytest.raises(ValueError, match="uint8"):
            LabHistogram().update(bad)


@pytest.mark.realdata
def test_fast_path_equals_skimage_on_cityscapes(shared_data: Path, kernel: str) -> None:
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


def test_accumulators_in_threads_count_apart(key_loop: object) -> None:
    """ctypes lets the C loop run outside the GIL: accumulators counting and flushing in two threads at once
    must not share scratch memory (each thread's bins equal scikit-image's for its own images)."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(12)
    sets = [rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8) for _ in range(2)]
    expected = [_skimage_counts(images) for images in sets]

    def work(k: int) -> bool:
        for _ in range(15):
            hist = LabHistogram()
            hist.update(sets[k])
            if any((hist.counts[c] != expected[k][c]).any() for c in CHANNELS):
                return False
        return True

    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(work, [0, 1, 0, 1]))


def test_compiler_without_simd_intrinsics_builds_the_portable_loop(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A C compiler that rejects the AVX code (here a wrapper that fails unless -DP2P_PORTABLE is given) still
    gives the C loop, with the portable slot loop, and the same bins as scikit-image."""
    import shutil
    import stat

    if lab_bins.kernel() != "c":
        pytest.skip("no C compiler: only the numpy loop runs here")
    real = shutil.which("cc") or shutil.which("gcc")
    wrapper = tmp_path / "cc-without-avx"
    wrapper.write_text(f'#!/bin/sh\ncase " $* " in *" -DP2P_PORTABLE "*) exec {real} "$@";; esac\nexit 1\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(wrapper))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(lab_bins, "_STATE", {"table": lab_bins.load_table()})
    monkeypatch.setattr(lab_bins, "_POOL", [])
    assert lab_bins.kernel() == "c"
    assert lab_bins._STATE["lib"].p2p_colour_simd(2) == 0
    images = np.random.default_rng(13).integers(0, 256, (2, 16, 40, 3), dtype=np.uint8)
    hist = LabHistogram()
    hist.update(images)
    expected = _skimage_counts(images)
    for c in CHANNELS:
        np.testing.assert_array_equal(hist.counts[c], expected[c])
