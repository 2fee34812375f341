"""Colours counted while libjpeg decodes (p2p_eval.metrics.jpeg_colours): the same bins as scikit-image's loop over
torchvision's decode of the same files (the colour command's other path), for every chroma subsampling, grey and
progressive JPEGs, whole images and AB halves whose edge falls on an iMCU boundary or not, and every slot loop;
files it does not take are left to torchvision; broken files are errors; the self-check refuses a decoder that
differs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from p2p_eval.errors import UserError
from p2p_eval.metrics import jpeg_colours, lab_bins
from p2p_eval.metrics.color import CHANNELS, LabHistogram, compare_sets

from .test_color import _skimage_counts

SHARED_VAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "cityscapes" / "val"


def _checked_library() -> object:
    """The checked library; a skip only where it cannot be built for want of jpeglib.h (or a compiler), a failure
    where it builds but its self-check refuses it (a broken decoder must not pass as a skipped test)."""
    lib = jpeg_colours.library()
    if lib is not None:
        return lib
    if jpeg_colours.build() is None and not Path("/usr/include/jpeglib.h").is_file():
        pytest.skip("JPEG colour loop not built: needs a C compiler and jpeglib.h (apt-get install libjpeg62-turbo-dev)")
    pytest.fail("the JPEG colour library builds (or jpeglib.h is there) but is not in use: the self-check against "
                "torchvision refused it, or it does not compile")


@pytest.fixture(params=["portable", "avx2", "avx512"])
def jpeg_loop(request: pytest.FixtureRequest) -> object:
    """The JPEG colour library with its portable, AVX2 or AVX-512 slot loop (skipped where unavailable)."""
    lib = _checked_library()
    level = lab_bins.SLOT_LOOPS.index(request.param)
    if lib.p2p_colour_simd(level) != level:
        lib.p2p_colour_simd(2)
        pytest.skip(f"this CPU has no {request.param}")
    yield lib
    lib.p2p_colour_simd(2)


def _jpeg(pixels: np.ndarray, **save: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", **save)
    return out.getvalue()


def _photo_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour ramps with a flat block (a colour seen hundreds of times: its byte counter wraps)."""
    ramps = np.cumsum(rng.integers(-6, 7, (h, w, 3)), axis=1) + rng.integers(60, 190, (1, 1, 3))
    ramps[: h // 2, : w // 3] = (200, 120, 40)
    return np.clip(ramps, 0, 255).astype(np.uint8)


def _torchvision_half(data: bytes, half: str | None) -> np.ndarray:
    """torchvision's decode of ``data`` (RGB), whole or the A / B half, as (1, H, W, 3)."""
    image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    image = image.permute(1, 2, 0).numpy()
    w = image.shape[1]
    image = image if half is None else image[:, : w // 2] if half == "A" else image[:, w // 2:]
    return np.ascontiguousarray(image)[None]


def _cases() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(5)
    cases = []
    for h, w in ((37, 50), (16, 64), (40, 130), (24, 512)):  # halves of 25, 32, 65, 256: on an iMCU edge or not
        pixels = _photo_like(rng, h, w)
        for name, subsampling in (("4:4:4", 0), ("4:2:2", 1), ("4:2:0", 2)):
            cases.append((f"{name} {w}x{h}", _jpeg(pixels, subsampling=subsampling, quality=90)))
        cases.append((f"grey {w}x{h}", _jpeg(pixels[..., 1])))
        cases.append((f"progressive {w}x{h}", _jpeg(pixels, progressive=True, quality=85)))
    return cases


@pytest.mark.parametrize("half", [None, "A", "B"])
def test_counts_equal_the_skimage_loop_on_torchvisions_decode(jpeg_loop: object, half: str | None) -> None:
    for name, data in _cases():
        expected = _skimage_counts(_torchvision_half(data, half))
        hist = LabHistogram()
        assert hist.update_jpeg(data, half), name
        assert hist.images == 1
        for c in CHANNELS:
            np.testing.assert_array_equal(hist.counts[c], expected[c], err_msg=f"{name}, half {half}, {c}")


@pytest.mark.realdata
def test_cityscapes_halves_equal_the_skimage_loop(jpeg_loop: object) -> None:
    if not SHARED_VAL.is_dir():
        pytest.skip(f"real data not found at {SHARED_VAL}")
    files = sorted(SHARED_VAL.glob("*.jpg"))[:6]
    for half in ("A", "B"):
        hist = LabHistogram()
        for path in files:
            assert hist.update_jpeg(path.read_bytes(), half, 256)
        expected = _skimage_counts(np.concatenate([_torchvision_half(p.read_bytes(), half) for p in files]))
        for c in CHANNELS:
            np.testing.assert_array_equal(hist.counts[c], expected[c], err_msg=f"half {half}, {c}")


def test_counter_limits_flush_first_and_stop_marking(jpeg_loop: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """More pixels than a counter may take before a flush: the accumulator flushes and counts again; past
    ``_MARKED`` pixels no blocks are marked and the flush scans every counter.  Bins stay exact."""
    monkeypatch.setattr(lab_bins.ColourCounts, "_LIMIT", 5000)
    monkeypatch.setattr(lab_bins.ColourCounts, "_MARKED", 3000)
    rng = np.random.default_rng(6)
    files = [_jpeg(_photo_like(rng, 40, 60)) for _ in range(5)]  # 2400 pixels each
    hist = LabHistogram()
    for data in files:
        assert hist.update_jpeg(data)
    expected = _skimage_counts(np.concatenate([_torchvision_half(d, None) for d in files]))
    for c in CHANNELS:
        np.testing.assert_array_equal(hist.counts[c], expected[c])
    too_big = _jpeg(_photo_like(rng, 80, 80))  # 6400 pixels: more than a counter may take at all
    assert not hist.update_jpeg(too_big) and hist.images == 5


def test_files_it_does_not_take_are_left_alone(jpeg_loop: object) -> None:
    rng = np.random.default_rng(7)
    pixels = _photo_like(rng, 20, 30)
    cmyk = io.BytesIO()
    Image.fromarray(pixels).convert("CMYK").save(cmyk, "JPEG")
    hist = LabHistogram()
    assert not hist.update_jpeg(cmyk.getvalue())  # CMYK: torchvision converts it by hand
    assert not hist.update_jpeg(_jpeg(pixels), size=32)  # another size than asked for: resized by torchvision
    assert not hist.update_jpeg(_jpeg(pixels[:, :29]), half="A")  # odd width: no AB pair
    assert hist.images == 0 and hist.pixels == 0
    assert hist.update_jpeg(_jpeg(pixels), size=None) and hist.pixels == 600


def test_broken_files_are_errors(jpeg_loop: object, tmp_path: Path) -> None:
    data = _jpeg(_photo_like(np.random.default_rng(8), 64, 64))
    truncated = data[: len(data) // 2]
    with pytest.raises(RuntimeError):  # torchvision refuses it too
        decode_image(torch.frombuffer(bytearray(truncated), dtype=torch.uint8), mode=ImageReadMode.RGB)
    with pytest.raises(ValueError):
        LabHistogram().update_jpeg(truncated)
    with pytest.raises(ValueError):
        LabHistogram().update_jpeg(b"\xff\xd8\xff not a JPEG at all")
    for name in ("real", "fake"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(data)
    (tmp_path / "fake" / "a.jpg").write_bytes(truncated)
    with pytest.raises(UserError, match=r"cannot read image .*a\.jpg"):
        compare_sets(tmp_path / "real", {"fake": tmp_path / "fake"}, progress=False)


def test_color_command_counts_jpegs_while_decoding(jpeg_loop: object, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """compare_sets takes the JPEG path for JPEG files (AB halves of the real set included) and torchvision's
    for PNGs; the intersections are those of the skimage loop's counts."""
    rng = np.random.default_rng(9)
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    pairs = [_photo_like(rng, 32, 64) for _ in range(3)]
    fakes = [_photo_like(rng, 32, 32) for _ in range(3)]
    for i, (ab, fake) in enumerate(zip(pairs, fakes)):
        (tmp_path / "real" / f"{i}.jpg").write_bytes(_jpeg(ab))
        if i < 2:
            (tmp_path / "fake" / f"{i}.jpg").write_bytes(_jpeg(fake))
        else:
            Image.fromarray(fake).save(tmp_path / "fake" / f"{i}.png")
    updates: list[tuple[int, ...]] = []
    real_update = LabHistogram.update
    monkeypatch.setattr(LabHistogram, "update", lambda self, images, mask=None: (
        updates.append(tuple(images.shape)), real_update(self, images, mask))[1])
    result = compare_sets(tmp_path / "real", {"fake": tmp_path / "fake"}, half="A", progress=False)
    assert updates == [(3, 32, 32)]  # only the PNG went through torchvision
    real = _skimage_counts(np.concatenate([_torchvision_half((tmp_path / "real" / f"{i}.jpg").read_bytes(), "A")
                                           for i in range(3)]))
    for c in CHANNELS:
        assert result["counts"]["real"][c] == real[c].tolist()
    assert result["images"] == {"real": 3, "fake": 3}


def test_self_check_refuses_a_decoder_that_differs() -> None:
    """Cropped exactly to the half (no iMCU column of context), libjpeg upsamples the chroma at the half's edge
    as at an image edge; the self-check must catch that and refuse the library."""
    _checked_library()
    exact = "JDIMENSION lo = x0 > 0 ? (JDIMENSION)(x0 - 1) : 0, hi = (JDIMENSION)(x0 + w < full ? x0 + w + 1 : full);"
    assert exact in jpeg_colours.JPEG_SOURCE
    source = jpeg_colours.JPEG_SOURCE.replace(exact, "JDIMENSION lo = (JDIMENSION)x0, hi = (JDIMENSION)(x0 + w);")
    lib = lab_bins.build_library(lab_bins.C_SOURCE + source, "jpeg-colours-test", link=["-ljpeg"])
    assert lib is not None
    jpeg_colours.set_prototypes(lib)
    assert not jpeg_colours._self_check(lib)
    assert jpeg_colours._self_check(jpeg_colours.library())


def test_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2P_EVAL_JPEG", "0")
    monkeypatch.setattr(jpeg_colours, "_STATE", {})
    assert not jpeg_colours.available()
    hist = LabHistogram()
    assert not hist.update_jpeg(_jpeg(np.zeros((8, 8, 3), np.uint8))) and hist.images == 0
