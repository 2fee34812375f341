"""``p2p-eval color`` end to end: real Cityscapes photos vs themselves / degraded copies, masks, user errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F

from p2p_eval.cli import main
from p2p_eval.imageio import list_images, read_image, write_png

COUNT = 60


@pytest.fixture(scope="module")
def city_sets(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COUNT val AB files, their photos (A halves) as PNG, a 50 % desaturated and a blurred copy."""
    root = tmp_path_factory.mktemp("city_color")
    for sub in ("ab", "real", "desat", "blur"):
        (root / sub).mkdir()
    for path in list_images(shared_data / "cityscapes" / "val")[:COUNT]:
        shutil.copy(path, root / "ab" / path.name)
        photo = read_image(path)[:, :, :256]
        write_png(root / "real" / f"{path.stem}.png", photo)
        rgb = photo.float()
        grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        write_png(root / "desat" / f"{path.stem}.png", (0.5 * rgb + 0.5 * grey).round().clamp(0, 255).to(torch.uint8))
        write_png(root / "blur" / f"{path.stem}.png", F.gaussian_blur(photo, [9, 9], [3.0, 3.0]))
    return root


@pytest.mark.realdata
def test_cityscapes_self_and_degraded(city_sets: Path, tmp_path: Path) -> None:
    out = tmp_path / "color.json"
    plot = tmp_path / "fig7.png"
    rc = main(["color", "--real", str(city_sets / "ab"), "--half", "A", "--images", str(city_sets / "real"),
               "--images", str(city_sets / "desat"), "--images", str(city_sets / "blur"),
               "--names", "same,desaturated,blurred", "--json", str(out), "--plot", str(plot), "--quiet"])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["intersection"]["same"] == pytest.approx({"L": 1.0, "a": 1.0, "b": 1.0}, abs=1e-9)
    for name in ("desaturated", "blurred"):
        assert all(result["intersection"][name][c] < 0.999 for c in "Lab")
    # desaturation pulls a and b towards 0: their histograms move far more than L's
    desat = result["intersection"]["desaturated"]
    assert desat["a"] < 0.8 and desat["b"] < 0.8 and desat["L"] > desat["a"]
    assert result["bins"]["L"] == {"min": 0.0, "max": 100.0, "count": 100, "width": 1.0}
    assert result["bins"]["a"]["count"] == 256
    assert sum(result["counts"]["real"]["L"]) == COUNT * 256 * 256
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_mask_ignores_pixels_outside_the_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for sub in ("real", "fake", "labels"):
        (tmp_path / sub).mkdir()
    for i in range(1, 4):
        real = torch.from_numpy(rng.integers(0, 256, (3, 32, 32), dtype=np.uint8))
        fake = real.clone()
        fake[:, :, 16:] = 255 - fake[:, :, 16:]  # only the right half differs
        labels = torch.full((1, 32, 32), 255, dtype=torch.uint8)
        labels[:, :, :16] = 0  # train id 0 = road on the left half
        write_png(tmp_path / "real" / f"{i}.png", real)
        write_png(tmp_path / "fake" / f"{i}.png", fake)
        write_png(tmp_path / "labels" / f"{i}.png", labels)
    out = tmp_path / "road.json"
    # --fake: the deprecated spelling of --images, kept working for one release
    args = ["color", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--json", str(out)]
    assert main(args + ["--class", "road", "--real-labels", str(tmp_path / "labels")]) == 0
    result = json.loads(out.read_text())
    assert result["intersection"]["fake"] == pytest.approx({"L": 1.0, "a": 1.0, "b": 1.0}, abs=1e-9)
    assert sum(result["counts"]["real"]["L"]) == 3 * 32 * 16
    assert json.loads(out.read_text())["source"] == {"real": str(tmp_path / "real"), "images": {"fake": str(tmp_path / "fake")},
                                                     "real_labels": str(tmp_path / "labels")}
    assert main(args) == 0
    assert json.loads(out.read_text())["intersection"]["fake"]["a"] < 1.0


def test_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    for i in range(2):
        write_png(tmp_path / "two" / f"{i}.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    write_png(tmp_path / "one" / "0.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    assert main(["color", "--real", str(tmp_path / "empty"), "--images", str(tmp_path / "two")]) == 2
    assert "has no images" in capsys.readouterr().err
    assert main(["color", "--real", str(tmp_path / "two"), "--images", str(tmp_path / "one")]) == 2
    assert f"has 1 image but --real {tmp_path / 'two'} has 2 images;" in capsys.readouterr().err
    assert main(["color", "--real", str(tmp_path / "two"), "--images", str(tmp_path / "two"), "--names", "a,b"]) == 2
    assert "--names 'a,b' must give 1 name, one per --images" in capsys.readouterr().err
    # the old legend spelling --labels still lands in --names, with a one-line deprecation note
    assert main(["color", "--real", str(tmp_path / "two"), "--images", str(tmp_path / "two"), "--labels", "a,b"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("p2p-eval: --labels is deprecated") and "use --names" in err[0]
    assert "--names 'a,b' must give 1 name, one per --images" in err[1]
    assert main(["color", "--real", str(tmp_path / "two"), "--images", str(tmp_path / "two"), "--class", "road"]) == 2
    assert "--real-labels" in capsys.readouterr().err


def test_grey_and_rgba_files_count_as_rgb_16_bit_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The decoder turns a greyscale PNG into R = G = B and drops an RGBA PNG's alpha; 16-bit PNGs are refused."""
    from PIL import Image

    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    for sub in ("rgb", "other", "deep"):
        (tmp_path / sub).mkdir()
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / "rgb" / "1.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb" / "2.png")
    Image.fromarray(grey).save(tmp_path / "other" / "1.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "other" / "2.png")
    out = tmp_path / "c.json"
    assert main(["color", "--real", str(tmp_path / "rgb"), "--images", str(tmp_path / "other"), "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["counts"]["other"] == result["counts"]["real"]
    Image.fromarray((grey.astype(np.uint16) * 257)).save(tmp_path / "deep" / "1.png")
    Image.fromarray((grey.astype(np.uint16) * 257)).save(tmp_path / "deep" / "2.png")
    assert main(["color", "--real", str(tmp_path / "rgb"), "--images", str(tmp_path / "deep")]) == 2
    assert "only 8-bit images are supported" in capsys.readouterr().err


def test_one_image_is_singular_and_bars_stay_off_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --quiet, a run whose stderr is captured (not a terminal) writes no progress bar there."""
    for sub in ("real", "fake"):
        (tmp_path / sub).mkdir()
        write_png(tmp_path / sub / "1.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    assert main(["color", "--real", str(tmp_path / "real"), "--images", str(tmp_path / "fake")]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "histogram intersection with the real set (1 image)" in captured.out
