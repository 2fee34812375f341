"""Full-reference image metrics (MSE, PSNR, SSIM) and set metrics (FID, LPIPS) over folders of images.

References (all on uint8 RGB images, computed in float64):

- MSE on [0, 1] images: mean of (x / 255 - y / 255)^2 over pixels and channels
  (``skimage.metrics.mean_squared_error`` of the images divided by 255), the scale of the ablation tables and of
  "Modified Pix2Pix" (its "per-pixel accuracy"); lower is better.
- PSNR: ``10 log10(1 / MSE)`` on [0, 1] images, the same number as ``10 log10(255^2 / MSE_255)`` on 0-255 values
  (``skimage.metrics.peak_signal_noise_ratio(data_range=255)``); higher is better; identical images give +inf
  (written as null in JSON).
- SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population
  covariances, averaged over the valid (un-padded) window positions and the three channels, i.e.
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255, channel_axis=-1)``; higher is better.  These are the metrics of "Modified Pix2Pix
  Conditional Adversarial Networks for Image-to-Image Translation" (Mrudula Y).
- FID (:mod:`.fid`) and LPIPS (:mod:`.lpips`) from local weights files; LPIPS diversity = the mean LPIPS
  over all pairs of outputs for the same input (the diversity score of the BicycleGAN line of work), needing
  two or more fake folders.

Per-image metrics pair real and fake images by file stem. Each per-image metric's mean carries a 95% percentile
bootstrap interval over images (Efron & Tibshirani): the resamples of :func:`p2p_eval.metrics.bootstrap.resample_counts`
(1000 replicates, seed 0 by default), the same resamples the FCN-score and the ablation tables use.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as tnf
from tqdm import tqdm

from p2p_eval.device import resolve_device
from p2p_eval.metrics.bootstrap import percentile_interval, resample_counts
from p2p_eval.errors import UserError, file_list, unknown_name
from p2p_eval.fsutil import write_json
from p2p_eval.imageio import list_images
from p2p_eval.metrics.fid import (FID_ENV, FID_HELP, GaussianStats, features, frechet_distance, load_fid_extractor,
                                  weights_path)
from p2p_eval.metrics.lpips import LPIPS_ENV, LPIPS_HELP, is_sample_folder, load_lpips, score_samples

DATA_RANGE = 255.0
#: How MSE is scaled, as the JSON says it.
MSE_SCALE = "[0, 1] images (0-255 values / 255)"
METRICS = ("mse", "psnr", "ssim", "fid", "lpips", "lpips_diversity", "lpips-diversity")
HIGHER_IS_BETTER = {"mse": False, "psnr": True, "ssim": True, "fid": False, "lpips": False, "lpips_diversity": True,
                    "lpips-diversity": True}
SSIM_SIGMA, SSIM_RADIUS, SSIM_K1, SSIM_K2 = 1.5, 5, 0.01, 0.03


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two uint8 (N, 3, H, W) or (3, H, W) batches of equal shape as float64 (N, C, H, W)."""
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    x, y = (t.unsqueeze(0) if t.ndim == 3 else t for t in (x, y))
    return x.double(), y.double()


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error (N,) of uint8 images read on [0, 1] (values / 255)."""
    a, b = _pair(x, y)
    return ((a / DATA_RANGE - b / DATA_RANGE) ** 2).mean((1, 2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (N,) in dB: peak 1 on [0, 1] images (data range 255 on 0-255 values); +inf for identical
    images."""
    return 10.0 * torch.log10(1.0 / mse(x, y))


def _gaussian_window(device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter (sigma 1.5, truncate 3.5 -> 11 taps)."""
    r = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (r / SSIM_SIGMA) ** 2)
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (N,), the mean of the SSIM map over valid positions and channels (see module doc)."""
    a, b = _pair(x, y)
    n, c, h, w = a.shape
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        raise UserError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1} pixels per side, got {h}x{w}; "
                        "give a larger --size or leave ssim out of --metric")
    g = _gaussian_window(a.device)
    kernel_h = g.view(1, 1, -1, 1).repeat(5 * c, 1, 1, 1)
    kernel_w = g.view(1, 1, 1, -1).repeat(5 * c, 1, 1, 1)
    stack = torch.cat([a, b, a * a, b * b, a * b], 1)
    blurred = tnf.conv2d(tnf.conv2d(stack, kernel_h, groups=5 * c), kernel_w, groups=5 * c)
    mu_a, mu_b, aa, bb, ab = blurred.split(c, 1)
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean((1, 2, 3))


PAIRWISE = {"mse": mse, "psnr": psnr, "ssim": ssim}


def parse_metrics(text: str) -> list[str]:
    """``psnr,ssim,fid`` -> names, each checked against :data:`METRICS`."""
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    for name in names:
        if name not in METRICS:
            raise unknown_name("metric", name, METRICS)
    if not names:
        raise UserError(f"--metric is empty; give some of {', '.join(METRICS)}")
    return names


def mean_ci(values: Sequence[float | None], n: int = 1000, seed: int = 0,
            level: float = 0.95) -> list[float | None]:
    """Percentile bootstrap interval of the mean over images, drawn as the FCN-score's resamples for the same
    seed; [None, None] when ``n`` is 0 or a value is missing or not finite (PSNR of an identical pair)."""
    if n == 0 or not values or any(v is None or not math.isfinite(v) for v in values):
        return [None, None]
    arr = np.asarray(values, dtype=np.float64)
    return percentile_interval(resample_counts(len(arr), n, seed) @ arr / len(arr), level)


def _summary(values: dict[str, float], higher_is_better: bool, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Mean with its 95% bootstrap interval (:func:`mean_ci`) and per-image values; non-finite values (PSNR of
    identical images) become null in JSON."""
    arr = np.array(list(values.values()), dtype=np.float64)
    clean = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
    mean = float(arr.mean())
    return {"mean": mean if math.isfinite(mean) else None, "ci95": mean_ci(list(values.values()), bootstrap, seed),
            "std": float(arr.std()) if np.isfinite(arr).all() else None, "count": len(arr),
            "infinite": int((~np.isfinite(arr)).sum()), "higher_is_better": higher_is_better, "per_image": clean}


def _matched(real: dict[str, Path], fake_dir: Path, name: str) -> dict[str, Path]:
    """The fake folder's images keyed by stem, checked to match the real stems one to one."""
    fake = {p.stem: p for p in list_images(fake_dir, f"--images folder ({name})")}
    if not fake:
        raise UserError(f"--images folder {fake_dir} ({name}) has no images (.png/.jpg)")
    missing, extra = sorted(set(real) - set(fake)), sorted(set(fake) - set(real))
    if missing or extra:
        raise UserError(f"--images {fake_dir} ({name}) does not match --real by file name: missing {file_list(missing) or '-'}; "
                        f"no real counterpart {file_list(extra) or '-'}. Name each output after its input")
    return fake


@dataclass(frozen=True)
class CompareOptions:
    """How :func:`compare_folders` reads and scores the images.

    ``fid_weights`` / ``lpips_weights`` (else ``$P2P_EVAL_FID_WEIGHTS`` / ``$P2P_EVAL_LPIPS_WEIGHTS``) and
    ``lpips_lin`` are local weights files; ``half`` reads the real folder as AB pairs; ``size`` resizes every
    image; ``json_out`` also writes the result there; ``progress=False`` shows no bar (with True, a bar shows only
    when stderr is a terminal). ``bootstrap`` replicates (0: none) drawn with ``seed`` give the 95% intervals;
    ``pairs`` random pairs of samples of one input (drawn with ``seed``) give lpips-diversity."""

    fid_weights: str | Path | None = None
    lpips_weights: str | Path | None = None
    lpips_lin: str | Path | None = None
    half: str | None = None
    size: int | None = None
    device: str = "auto"
    batch_size: int = 16
    json_out: str | Path | None = None
    progress: bool = True
    bootstrap: int = 1000
    pairs: int = 2000
    seed: int = 0


@dataclass
class _Tally:
    """What the batches add up to: per-image values per set and metric, FID statistics, LPIPS diversity."""

    values: dict[str, dict[str, dict[str, float]]]
    stats: dict[str, GaussianStats]
    diversity: dict[str, float] = field(default_factory=dict)


def compare_folders(real_dir: str | Path, fakes: Mapping[str, str | Path], metrics: Sequence[str],
                    options: CompareOptions | None = None, **fields: Any) -> dict:
    """Metrics of each generated-image folder against the real folder (images paired by stem).

    Returns ``{"metrics": {SET: {name: {"mean", "ci95", "per_image", ...}, "fid": {"value", ...}}},
    "diversity": {...}, "images": N, "source": {"real": REAL_DIR, "images": {SET: DIR}}, "mse_scale",
    "data_range": 255, "bootstrap", ...}``: the folders under the names of the flags that gave them (``--real``,
    ``--images``), ``images`` the number of image pairs as in the FCN-score's JSON.  ``fields`` set fields of
    ``options`` by name (:class:`CompareOptions`).
    """
    opts = dataclasses.replace(options or CompareOptions(), **fields)
    metrics = list(dict.fromkeys(metrics))
    if not fakes:
        raise UserError("give at least one --images folder")
    if "lpips-diversity" in metrics or any(is_sample_folder(folder) for folder in fakes.values()):
        return score_samples(real_dir, fakes, metrics, opts)  # folders of samples: lpips.score_samples
    if "lpips_diversity" in metrics and len(fakes) < 2:
        raise UserError("lpips_diversity needs two or more --images folders: outputs of the same inputs from repeated runs")
    dev = resolve_device(opts.device)
    real = {p.stem: p for p in list_images(real_dir, "--real folder")}
    if not real:
        raise UserError(f"--real folder {real_dir} has no images (.png/.jpg)")
    fake = {name: _matched(real, Path(folder), name) for name, folder in fakes.items()}
    fid_model = (load_fid_extractor(weights_path(opts.fid_weights, FID_ENV, FID_HELP), dev)
                 if "fid" in metrics else None)
    lpips_model = (load_lpips(weights_path(opts.lpips_weights, LPIPS_ENV, LPIPS_HELP), opts.lpips_lin, dev)
                   if {"lpips", "lpips_diversity"} & set(metrics) else None)
    tally = _Tally(values={n: {m: {} for m in metrics if m in PAIRWISE or m == "lpips"} for n in fake},
                   stats={n: GaussianStats() for n in ["real", *fake]})
    stems = list(real)
    for start in tqdm(range(0, len(stems), opts.batch_size), desc="metrics", unit="batch",
                      disable=None if opts.progress else True):
        chunk = stems[start:start + opts.batch_size]
        _add_batch(tally, chunk, (real, fake), (fid_model, lpips_model), "lpips_diversity" in metrics, opts, dev)
    result: dict = {"metrics": {}, "images": len(stems),
                    "source": {"real": str(real_dir), "images": {n: str(p) for n, p in fakes.items()}},
                    "mse_scale": MSE_SCALE, "data_range": DATA_RANGE, "half": opts.half, "size": opts.size,
                    "bootstrap": {"replicates": opts.bootstrap, "seed": opts.seed, "level": 0.95}}
    for n in fake:
        result["metrics"][n] = {m: _summary(v, HIGHER_IS_BETTER[m], opts.bootstrap, opts.seed)
                                for m, v in tally.values[n].items()}
        if fid_model is not None:
            mu_r, s_r = tally.stats["real"].compute()
            mu_f, s_f = tally.stats[n].compute()
            result["metrics"][n]["fid"] = {"value": frechet_distance(mu_r, s_r, mu_f, s_f), "higher_is_better": False,
                                           "weights": str(weights_path(opts.fid_weights, FID_ENV, FID_HELP))}
    if tally.diversity:
        result["diversity"] = {"lpips_diversity": _summary(tally.diversity, True, opts.bootstrap, opts.seed),
                               "sets": list(fake),
                               "pairs_per_image": len(fake) * (len(fake) - 1) // 2}
    if opts.json_out is not None:
        write_json(opts.json_out, result)
    return result


def _add_batch(tally: _Tally, chunk: list[str], files: tuple[dict[str, Path], dict[str, dict[str, Path]]],
               models: tuple[torch.nn.Module | None, torch.nn.Module | None], diversity: bool, opts: CompareOptions,
               dev: torch.device) -> None:
    """Score the images ``chunk`` (stems) of the real folder and of every set into ``tally``."""
    from p2p_eval.metrics.color import load_photo

    (real, fake), (fid_model, lpips_model) = files, models
    r = _stack([load_photo(real[s], opts.half, opts.size) for s in chunk], chunk, "real")
    outs = {n: _stack([load_photo(fake[n][s], None, opts.size) for s in chunk], chunk, n) for n in fake}
    for n, f in outs.items():
        if f.shape != r.shape:
            raise UserError(f"{n} images are {tuple(f.shape[2:])} but real ones {tuple(r.shape[2:])}; "
                            f"use --size S to compare at one size (or --half A for AB real images)")
        for m in tally.values[n]:
            per = PAIRWISE[m](r, f) if m in PAIRWISE else lpips_model(_unit(r, dev), _unit(f, dev)).cpu()
            tally.values[n][m].update({s: float(v) for s, v in zip(chunk, per)})
    if fid_model is not None:
        tally.stats["real"].update(features(fid_model, r, dev))
        for n, f in outs.items():
            tally.stats[n].update(features(fid_model, f, dev))
    if diversity:
        pair_d = [lpips_model(_unit(outs[p], dev), _unit(outs[q], dev)).cpu() for p, q in itertools.combinations(outs, 2)]
        tally.diversity.update({s: float(v) for s, v in zip(chunk, torch.stack(pair_d).mean(0))})


def _stack(images: list[torch.Tensor], stems: list[str], name: str) -> torch.Tensor:
    """One batch; UserError when the images of a set differ in size."""
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) > 1:
        raise UserError(f"{name} images {file_list(stems)} differ in size {sorted(shapes)}; pass --size S")
    return torch.stack(images)


def _unit(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 -> float [-1, 1] on ``device`` (LPIPS input)."""
    return images.to(device).float().div(127.5).sub(1.0)
