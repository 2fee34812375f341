"""Folders of samples (``translate --samples K``): LPIPS diversity over random pairs of samples of one input and FID
over all samples, with stand-in networks whose weights the test makes, against numpy computations of the formulas."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from p2p_eval.cli import main
from p2p_eval.errors import UserError
from p2p_eval.imageio import write_png
from p2p_eval.metrics.lpips import DiversityMean, draw_pairs, is_sample_folder, sample_groups

SHIFT = np.array([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
SCALE = np.array([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)
#: samples per input: "b" has one sample only, so no pair of it is ever drawn
COUNTS = {"a": 3, "b": 1, "c": 2, "d": 4}


class Taps(nn.Module):
    """A stand-in LPIPS backbone: two feature maps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = torch.relu(self.c1(x))
        return [a, torch.relu(self.c2(a))]


class Pool(nn.Module):
    """A stand-in FID feature extractor: a strided conv and a global mean -> (N, 3)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.c = nn.Conv2d(3, 3, 7, stride=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.c(x)).mean((2, 3))


def _image(rng: np.random.Generator, side: int = 24) -> np.ndarray:
    return rng.integers(0, 256, (side, side, 3), dtype=np.uint8)


@pytest.fixture()
def folders(tmp_path: Path) -> dict[str, Path]:
    """A real folder (a..e) and a folder of samples, with Taps / linear layers / Pool weights on disk."""
    rng = np.random.default_rng(11)
    real, samples = tmp_path / "real", tmp_path / "samples"
    real.mkdir()
    samples.mkdir()
    for name in ("a", "b", "c", "d", "e"):
        write_png(real / f"{name}.png", torch.from_numpy(_image(rng)).permute(2, 0, 1))
    for name, count in COUNTS.items():
        for k in range(count):
            write_png(samples / f"{name}_sample{k}.png", torch.from_numpy(_image(rng)).permute(2, 0, 1))
    torch.jit.save(torch.jit.script(Taps().eval()), str(tmp_path / "taps.pt"))
    torch.manual_seed(7)
    torch.save({"lin0.model.1.weight": torch.rand(1, 4, 1, 1), "lin1.model.1.weight": torch.rand(1, 6, 1, 1)},
               tmp_path / "lin.pth")
    torch.jit.save(torch.jit.script(Pool().eval()), str(tmp_path / "pool.pt"))
    return {"real": real, "samples": samples, "root": tmp_path}


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)[None].astype(np.float64)


def _lpips(a: Path, b: Path, root: Path) -> float:
    """LPIPS of two image files by the paper's formula, in numpy (features from the stand-in backbone)."""
    taps = torch.jit.load(str(root / "taps.pt"))
    lin = torch.load(root / "lin.pth", weights_only=True)
    with torch.no_grad():
        fa, fb = (taps(torch.from_numpy((_read(p) / 127.5 - 1 - SHIFT) / SCALE).float()) for p in (a, b))
    total = 0.0
    for x, y, w in zip(fa, fb, (lin["lin0.model.1.weight"], lin["lin1.model.1.weight"])):
        x, y = x.double().numpy(), y.double().numpy()
        x = x / np.sqrt(1e-8 + (x**2).sum(1, keepdims=True))
        y = y / np.sqrt(1e-8 + (y**2).sum(1, keepdims=True))
        total += float(((x - y) ** 2 * w.double().numpy()).sum(1).mean())
    return total


def _metrics(folders: dict[str, Path], *args: str) -> int:
    root = folders["root"]
    return main(["metrics", "--real", str(folders["real"]), "--images", str(folders["samples"]), "--device", "cpu",
                 "--lpips-weights", str(root / "taps.pt"), "--lpips-lin", str(root / "lin.pth"),
                 "--fid-weights", str(root / "pool.pt"), "--quiet", *args])


def test_groups_by_input_and_sample_number(tmp_path: Path) -> None:
    for name in ("x_y_sample10", "x_y_sample2", "x_y_sample0", "z_sample1"):
        write_png(tmp_path / f"{name}.png", torch.zeros(3, 4, 4, dtype=torch.uint8))
    groups = sample_groups(tmp_path)
    assert {k: [p.stem for p in v] for k, v in groups.items()} == {
        "x_y": ["x_y_sample0", "x_y_sample2", "x_y_sample10"], "z": ["z_sample1"]}
    assert is_sample_folder(tmp_path)
    write_png(tmp_path / "plain.png", torch.zeros(3, 4, 4, dtype=torch.uint8))
    assert not is_sample_folder(tmp_path)
    with pytest.raises(UserError, match="plain.png not named <input name>_sample<k>"):
        sample_groups(tmp_path)


def test_pairs_are_two_samples_of_one_input_drawn_from_the_seed(folders: dict[str, Path]) -> None:
    groups = sample_groups(folders["samples"])
    pairs = draw_pairs(groups, 3000, seed=4)
    assert len(pairs) == 3000 and pairs == draw_pairs(groups, 3000, seed=4)
    assert pairs != draw_pairs(groups, 3000, seed=5)
    inputs = Counter()
    for a, b in pairs:
        assert a != b and a.stem.rsplit("_sample", 1)[0] == b.stem.rsplit("_sample", 1)[0]
        inputs[a.stem.rsplit("_sample", 1)[0]] += 1
    # inputs with two or more samples, each chosen with probability 1/3 (binomial sd of 3000 * 1/3: ~26)
    assert set(inputs) == {"a", "c", "d"} and all(abs(n - 1000) < 130 for n in inputs.values())
    # within "d" (4 samples) each of the 6 unordered pairs is equally likely
    d_pairs = Counter(frozenset((a.stem, b.stem)) for a, b in pairs if a.stem.startswith("d_"))
    assert len(d_pairs) == 6 and all(abs(n - inputs["d"] / 6) < 60 for n in d_pairs.values())
    with pytest.raises(UserError, match="two or more samples"):
        draw_pairs({"b": groups["b"]}, 10)


def test_diversity_accumulator_merges_like_numpy() -> None:
    values = np.random.default_rng(2).random(9)
    one, two = DiversityMean(), DiversityMean()
    one.update(torch.tensor(values[:4]))
    two.update(torch.tensor(values[4:]))
    got = one.merge(two).compute()
    assert got["count"] == 9 and got["mean"] == pytest.approx(values.mean())
    assert got["std"] == pytest.approx(values.std(ddof=1)) and got["sem"] == pytest.approx(values.std(ddof=1) / 3)
    assert DiversityMean.higher_is_better


def test_lpips_diversity_of_one_pair_is_its_lpips(folders: dict[str, Path], tmp_path: Path) -> None:
    # only input "c" has two samples left: every draw is that pair, so the mean is its LPIPS exactly
    for path in folders["samples"].glob("[ad]_sample*.png"):
        if not path.stem.endswith("_sample0"):
            path.unlink()
    out = tmp_path / "one.json"
    assert _metrics(folders, "--metric", "lpips-diversity", "--pairs", "7", "--json", str(out)) == 0
    got = json.loads(out.read_text())["metrics"]["samples"]["lpips-diversity"]
    expected = _lpips(folders["samples"] / "c_sample0.png", folders["samples"] / "c_sample1.png", folders["root"])
    assert got["mean"] == pytest.approx(expected, rel=1e-5) and got["count"] == 7 and got["inputs"] == 1
    assert got["std"] == pytest.approx(0.0, abs=1e-6) and got["higher_is_better"] is True


def test_lpips_diversity_over_random_pairs_and_its_seed(folders: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    runs = []
    for seed in ("3", "3", "8"):
        out = tmp_path / f"div{len(runs)}.json"
        assert _metrics(folders, "--metric", "lpips-diversity", "--pairs", "40", "--seed", seed, "--batch-size", "16",
                        "--json", str(out)) == 0
        runs.append(json.loads(out.read_text()))
    assert re.search(r"^samples: lpips-diversity \d+\.\d{4}$", capsys.readouterr().out, re.M)
    got = runs[0]["metrics"]["samples"]["lpips-diversity"]
    assert runs[1] == runs[0] and runs[2]["metrics"]["samples"]["lpips-diversity"]["mean"] != got["mean"]
    pairs = draw_pairs(sample_groups(folders["samples"]), 40, seed=3)
    distances = [_lpips(a, b, folders["root"]) for a, b in pairs]
    assert got["mean"] == pytest.approx(np.mean(distances), rel=1e-5)
    assert got["std"] == pytest.approx(np.std(distances, ddof=1), rel=1e-4)
    assert (got["count"], got["inputs"], got["seed"]) == (40, 3, 3)
    assert runs[0]["samples"]["samples"] == {"inputs": 4, "images": 10}


def test_fid_over_all_samples(folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fid.json"
    assert _metrics(folders, "--metric", "fid", "--json", str(out), "--batch-size", "3") == 0
    pool = torch.jit.load(str(folders["root"] / "pool.pt"))

    def feats(files: list[Path]) -> np.ndarray:  # 299 x 299 bilinear, [-1, 1], the stand-in's features
        with torch.no_grad():
            x = torch.from_numpy(np.concatenate([_read(p) for p in files])).float()
            x = nn.functional.interpolate(x / 127.5 - 1, size=(299, 299), mode="bilinear", align_corners=False)
            return pool(x).double().numpy()

    real = feats(sorted(folders["real"].glob("*.png")))
    fake = feats(sorted(folders["samples"].glob("*.png")))
    assert len(fake) == 10  # all samples of all inputs
    mu1, mu2, s1, s2 = real.mean(0), fake.mean(0), np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum()
    got = json.loads(out.read_text())["metrics"]["samples"]["fid"]
    assert got["value"] == pytest.approx(expected, rel=1e-4, abs=1e-8) and got["images"] == 10


def test_wrong_folders_are_one_line_errors(folders: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    assert _metrics(folders, "--metric", "psnr,fid") == 2
    assert "psnr: not for a folder of samples" in capsys.readouterr().err
    plain = main(["metrics", "--real", str(folders["real"]), "--images", str(folders["real"]), "--metric",
                  "lpips-diversity", "--device", "cpu", "--quiet"])
    assert plain == 2 and "is not a folder of samples" in capsys.readouterr().err
    write_png(folders["samples"] / "zz_sample0.png", torch.zeros(3, 24, 24, dtype=torch.uint8))
    assert _metrics(folders, "--metric", "lpips-diversity") == 2
    assert "samples of zz, which have no image in --real" in capsys.readouterr().err
    assert _metrics(folders, "--metric", "lpips-diversity", "--pairs", "0") == 2
    assert "out of range" in capsys.readouterr().err
