"""PSNR / SSIM / MSE (on [0, 1] images) against scikit-image; bootstrap intervals of the means against a numpy
resampling; the JSON's keys; Frechet distance against closed forms; FID / LPIPS pipelines with stand-in networks
against independent numpy / torchmetrics computations; user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg
from skimage import data, metrics
from torch import nn

from p2p_eval.cli import main
from p2p_eval.imageio import write_png
from p2p_eval.metrics.fid import GaussianStats, frechet_distance
from p2p_eval.metrics.image import mse, psnr, ssim


def _photo_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    pairs = []
    for name in ("astronaut", "coffee", "chelsea"):
        x = getattr(data, name)()[:160, :200]
        noisy = np.clip(x.astype(np.int16) + rng.integers(-25, 26, x.shape), 0, 255).astype(np.uint8)
        pairs.append((x, noisy))
    pairs.append((data.rocket()[:160, :200], data.rocket()[5:165, 3:203]))
    return pairs


@pytest.mark.parametrize("pair", _photo_pairs())
def test_pairwise_metrics_match_skimage(pair: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = pair
    tx, ty = (torch.from_numpy(a).permute(2, 0, 1) for a in (x, y))
    # MSE on [0, 1] images: skimage's MSE of the images divided by 255 (the 0-255 MSE / 255^2)
    assert float(mse(tx, ty)[0]) == pytest.approx(metrics.mean_squared_error(x / 255.0, y / 255.0), rel=1e-12)
    assert float(mse(tx, ty)[0]) == pytest.approx(metrics.mean_squared_error(x, y) / 255.0**2, rel=1e-12)
    assert float(psnr(tx, ty)[0]) == pytest.approx(metrics.peak_signal_noise_ratio(x, y, data_range=255), rel=1e-12)
    expected = metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                             data_range=255, channel_axis=-1)
    assert float(ssim(tx, ty)[0]) == pytest.approx(expected, abs=1e-9)


def test_identical_images() -> None:
    x = torch.from_numpy(data.coffee()[:64, :64]).permute(2, 0, 1)
    assert float(ssim(x, x)[0]) == pytest.approx(1.0)
    assert float(mse(x, x)[0]) == 0.0 and float(psnr(x, x)[0]) == float("inf")


def test_metrics_cli_means_cis_and_json_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``metrics`` prints MSE on [0, 1] with the ablation tables' 95% bootstrap intervals (percentile, 1000
    resamples of the images drawn by numpy's PCG64(0)), and its JSON names the folders as the flags do."""
    from PIL import Image

    real, fake, _ = _folders(tmp_path, count=5)
    out = tmp_path / "m.json"
    assert main(["metrics", "--real", str(real), "--images", str(fake), "--names", "g", "--metric", "mse,psnr",
                 "--json", str(out)]) == 0
    x = np.stack([np.array(Image.open(real / f"{i}.png")) for i in range(5)])
    y = np.stack([np.array(Image.open(fake / f"{i}.png")) for i in range(5)])
    per = np.array([metrics.mean_squared_error(a / 255.0, b / 255.0) for a, b in zip(x, y)])
    draws = np.random.Generator(np.random.PCG64(0)).integers(0, 5, size=(1000, 5))
    lo, hi = np.percentile(per[draws].mean(1), [2.5, 97.5])
    result = json.loads(out.read_text())
    got = result["metrics"]["g"]["mse"]
    assert got["mean"] == pytest.approx(per.mean(), rel=1e-12) and 0.1 < got["mean"] < 0.2  # random pairs: ~1/6
    assert got["ci95"] == pytest.approx([lo, hi], rel=1e-12)
    assert result["source"] == {"real": str(real), "images": {"g": str(fake)}} and "fake" not in result
    assert result["images"] == 5 and result["mse_scale"].startswith("[0, 1]")
    printed = capsys.readouterr().out
    assert printed.startswith("5 image pairs; MSE on [0, 1] images")
    assert f"g: mse {per.mean():.4f} [{lo:.4f}, {hi:.4f}], psnr " in printed
    assert main(["metrics", "--real", str(real), "--images", str(fake), "--metric", "mse", "--bootstrap", "0",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"][fake.name]["mse"]["ci95"] == [None, None]


def test_frechet_distance_closed_forms() -> None:
    # commuting (diagonal) covariances: |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    # general SPD: W2^2 = |dmu|^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), square roots by eigendecomposition
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    S1, S2 = a @ a.T + np.eye(4), b @ b.T + 0.5 * np.eye(4)

    def sqrt_spd(m: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r = sqrt_spd(S1)
    expected = np.trace(S1 + S2 - 2 * sqrt_spd(r @ S2 @ r))
    assert frechet_distance(np.zeros(4), S1, np.zeros(4), S2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(np.zeros(4), S1, np.zeros(4), S1) == pytest.approx(0.0, abs=1e-8)
    assert np.allclose(linalg.sqrtm(S1) @ linalg.sqrtm(S1), S1)


def test_gaussian_stats_stream_like_numpy() -> None:
    f = np.random.default_rng(2).normal(size=(50, 6))
    a, b = GaussianStats(), GaussianStats()
    a.update(torch.from_numpy(f[:20]))
    b.update(f[20:])
    mu, cov = a.merge(b).compute()
    np.testing.assert_allclose(mu, f.mean(0), atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(f, rowvar=False), atol=1e-12)


class TinyNet(nn.Module):
    """A stand-in feature extractor: two convs and a global pool -> (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 5, stride=4), nn.ReLU(), nn.Conv2d(6, 4, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))


class TinyTaps(nn.Module):
    """A stand-in LPIPS backbone returning two feature maps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 5, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = torch.relu(self.c1(x))
        return [a, torch.relu(self.c2(a))]


def _folders(root: Path, sets: int = 3, count: int = 6, size: int = 32) -> list[Path]:
    rng = np.random.default_rng(3)
    dirs = []
    for k in range(sets):
        d = root / f"set{k}"
        d.mkdir()
        for i in range(count):
            write_png(d / f"{i}.png", torch.from_numpy(rng.integers(0, 256, (3, size, size), dtype=np.uint8)))
        dirs.append(d)
    return dirs


def _load(folder: Path) -> torch.Tensor:
    from PIL import Image

    return torch.stack([torch.from_numpy(np.array(Image.open(folder / f"{i}.png"))).permute(2, 0, 1) for i in range(6)])


def test_fid_pipeline_with_standin_network(tmp_path: Path) -> None:
    real, fake, _ = _folders(tmp_path)
    net = TinyNet().eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "tiny.pt"))
    out = tmp_path / "fid.json"
    # --fake: the deprecated spelling of --images, kept working for one release
    assert main(["metrics", "--real", str(real), "--fake", str(fake), "--metric", "fid", "--fid-weights",
                 str(tmp_path / "tiny.pt"), "--json", str(out), "--device", "cpu", "--batch-size", "4"]) == 0
    with torch.no_grad():  # independent: 299x299 bilinear resize, [-1, 1], features, numpy stats, eigh square roots
        feats = [net(torch.nn.functional.interpolate(_load(d).float() / 127.5 - 1, size=(299, 299),
                                                     mode="bilinear", align_corners=False)).double().numpy()
                 for d in (real, fake)]
    mu1, mu2 = feats[0].mean(0), feats[1].mean(0)
    s1, s2 = np.cov(feats[0], rowvar=False), np.cov(feats[1], rowvar=False)
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    w2, v2 = np.linalg.eigh(r @ s2 @ r)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.sqrt(np.clip(w2, 0, None)).sum()
    assert json.loads(out.read_text())["metrics"]["set1"]["fid"]["value"] == pytest.approx(expected, rel=1e-3, abs=1e-6)


def test_lpips_pipeline_with_standin_network(tmp_path: Path) -> None:
    real, f1, f2 = _folders(tmp_path)
    taps = TinyTaps().eval()
    torch.jit.save(torch.jit.script(taps), str(tmp_path / "taps.pt"))
    lins = [torch.rand(1, 4, 1, 1), torch.rand(1, 5, 1, 1)]
    torch.save({"lin0.model.1.weight": lins[0], "lin1.model.1.weight": lins[1]}, tmp_path / "lin.pth")
    out = tmp_path / "lpips.json"
    assert main(["metrics", "--real", str(real), "--images", str(f1), "--images", str(f2), "--metric", "lpips,lpips_diversity",
                 "--lpips-weights", str(tmp_path / "taps.pt"), "--lpips-lin", str(tmp_path / "lin.pth"),
                 "--json", str(out), "--device", "cpu"]) == 0
    shift = np.array([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
    scale = np.array([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)

    def dist(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:  # numpy LPIPS by the paper's formula
        with torch.no_grad():
            fx = taps(torch.from_numpy((x.numpy() / 127.5 - 1 - shift) / scale).float())
            fy = taps(torch.from_numpy((y.numpy() / 127.5 - 1 - shift) / scale).float())
        total = np.zeros(len(x))
        for a, b, w in zip(fx, fy, lins):
            a, b = a.double().numpy(), b.double().numpy()
            a = a / np.sqrt(1e-8 + (a**2).sum(1, keepdims=True))
            b = b / np.sqrt(1e-8 + (b**2).sum(1, keepdims=True))
            total += ((a - b) ** 2 * w.double().numpy()).sum(1).mean((1, 2))
        return total

    result = json.loads(out.read_text())
    x0, x1, x2 = _load(real), _load(f1), _load(f2)
    assert result["metrics"]["set1"]["lpips"]["mean"] == pytest.approx(dist(x0, x1).mean(), rel=1e-5)
    assert result["metrics"]["set2"]["lpips"]["mean"] == pytest.approx(dist(x0, x2).mean(), rel=1e-5)
    assert result["diversity"]["lpips_diversity"]["mean"] == pytest.approx(dist(x1, x2).mean(), rel=1e-5)


def test_lpips_alexnet_matches_torchmetrics(tmp_path: Path) -> None:
    from torchmetrics.functional.image.lpips import _LPIPS
    from torchvision.models import alexnet

    from p2p_eval.metrics.lpips import load_lpips

    torch.manual_seed(4)
    state = alexnet(weights=None).state_dict()
    torch.save(state, tmp_path / "alexnet.pth")
    ours = load_lpips(tmp_path / "alexnet.pth")
    reference = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()
    for name, module in reference.net.named_children():
        for idx, layer in module.named_children():
            if isinstance(layer, nn.Conv2d):
                layer.weight.data.copy_(state[f"features.{idx}.weight"])
                layer.bias.data.copy_(state[f"features.{idx}.bias"])
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        np.testing.assert_allclose(ours(x, y).numpy(), reference(x, y).flatten().numpy(), rtol=1e-4)


def test_missing_weights_and_mismatch_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("P2P_EVAL_FID_WEIGHTS", raising=False)
    monkeypatch.delenv("P2P_EVAL_LPIPS_WEIGHTS", raising=False)
    real, fake, _ = _folders(tmp_path, count=2)
    assert main(["metrics", "--real", str(real), "--images", str(fake), "--metric", "fid"]) == 2
    err = capsys.readouterr().err
    assert "--fid-weights" in err and "inception_v3_google" in err and "P2P_EVAL_FID_WEIGHTS" in err
    assert main(["metrics", "--real", str(real), "--images", str(fake), "--metric", "lpips"]) == 2
    assert "--lpips-weights" in capsys.readouterr().err
    assert main(["metrics", "--real", str(real), "--images", str(fake), "--metric", "fid", "--fid-weights",
                 str(tmp_path / "nope.pth")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["metrics", "--real", str(real), "--images", str(fake), "--metric", "psnr,bogus"]) == 2
    assert "valid" in capsys.readouterr().err
    (fake / "1.png").rename(fake / "9.png")
    assert main(["metrics", "--real", str(real), "--images", str(fake)]) == 2
    err = capsys.readouterr().err
    assert "missing 1;" in err and "no real counterpart 9" in err
