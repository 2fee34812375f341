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
