"""Frechet Inception Distance (Heusel et al. 2017) from a LOCAL feature-extractor weights file.

Reference: FID = ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) over the feature means and
(unbiased, ``numpy.cov``) covariances of the two sets, with the matrix square root from
``scipy.linalg.sqrtm`` and pytorch-fid's guard (add 1e-6 I when the product is singular, keep the real
part).  Lower is better.  The one-to-many document ("Unsupervised Image-to-Image Translation Using
Domain-Specific Variational Information Bound") reports FID over many random outputs per input: a folder of
samples (``translate --samples K``) is scored over all its images (:func:`files_statistics`).

Feature extractors (nothing is ever downloaded; constructors run with ``weights=None``):

- a torchvision Inception-v3 state dict, e.g. ``inception_v3_google-0cc3c7bd.pth`` from
  https://download.pytorch.org/models/ : the 2048-d pool features (``fc`` replaced by identity);
- a TorchScript module (``torch.jit.save``) mapping float (N, 3, 299, 299) to (N, D) features.

Both get the same input: the uint8 image resized to 299 x 299 (bilinear, no antialias) and scaled to
[-1, 1] (what torchvision's ``transform_input`` makes of ImageNet-normalised input).  torchvision's
Inception weights are not the TensorFlow graph of the FID paper, so values are comparable between runs
of this toolkit, not with published FIDs.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from scipy import linalg
from torch import nn
from tqdm import tqdm

from p2p_eval.errors import UserError, require_file
from p2p_eval.fsutil import torch_load

FID_ENV = "P2P_EVAL_FID_WEIGHTS"
FID_HELP = (f"FID needs Inception-v3 weights on disk: download torchvision's "
            f"https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth yourself (or use a TorchScript "
            f"feature extractor) and pass --fid-weights PATH or set {FID_ENV}=PATH; nothing is downloaded automatically")
INPUT_SIZE = 299


def weights_path(given: str | Path | None, env: str, help_text: str) -> Path:
    """The weights file from the option, else from the environment variable ``env``; UserError if neither."""
    value = given if given is not None else os.environ.get(env)
    if not value:
        raise UserError(help_text)
    path = Path(value)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}. {help_text}")
    return path


def is_torchscript(path: Path) -> bool:
    """True when ``path`` is a TorchScript archive (a zip holding ``constants.pkl`` or ``code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain tensor state dict, loaded safely (``weights_only``); UserError naming the file otherwise."""
    state = torch_load(path, "PyTorch weights file", "give the weights file (a state dict of tensors)")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    return state


def load_fid_extractor(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """The feature extractor of ``path`` (TorchScript, or torchvision Inception-v3 state dict), in eval mode."""
    from torchvision.models import inception_v3  # here: torchvision.models is slow to import, FID is rare

    path = require_file(path, "FID weights file")
    if is_torchscript(path):
        model = torch.jit.load(str(path), map_location="cpu")
    else:
        model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        try:
            model.load_state_dict(load_state_dict(path))
        except RuntimeError as exc:
            raise UserError(f"{path} is not a torchvision Inception-v3 state dict ({str(exc).splitlines()[0]}). "
                            f"{FID_HELP}") from exc
        model.fc = nn.Identity()
    return model.eval().to(device)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float (N, 3, 299, 299) in [-1, 1], the extractor's input."""
    x = images.float().div(255.0)
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.resize(x, [INPUT_SIZE, INPUT_SIZE], antialias=False)
    return x.mul(2.0).sub(1.0)


class GaussianStats:
    """Streaming mean and covariance of feature vectors (sums in float64); merges across batches."""

    higher_is_better = False  # of the FID built on two of these

    def __init__(self) -> None:
        self.n = 0
        self.total: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        """Add (N, D) features."""
        f = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, np.float64)
        f = f.reshape(len(f), -1)
        if self.total is None:
            self.total, self.outer = np.zeros(f.shape[1]), np.zeros((f.shape[1], f.shape[1]))
        self.total += f.sum(0)
        self.outer += f.T @ f
        self.n += len(f)

    def merge(self, other: GaussianStats) -> GaussianStats:
        """Add ``other``'s sums into this one and return it."""
        if other.total is not None:
            if self.total is None:
                self.total, self.outer = np.zeros_like(other.total), np.zeros_like(other.outer)
            self.total += other.total
            self.outer += other.outer
            self.n += other.n
        return self

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, unbiased covariance) as ``numpy.mean`` / ``numpy.cov(rowvar=False)`` give them."""
        if self.n < 2:
            raise UserError(f"FID needs at least 2 images per set, got {self.n}")
        mu = self.total / self.n
        cov = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, cov


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (pytorch-fid's ``calculate_frechet_distance``)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


@torch.no_grad()
def features(model: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, D) features of uint8 (N, 3, H, W) images."""
    out = model(preprocess(images.to(device)))
    return out.reshape(len(images), -1)


@torch.no_grad()
def files_statistics(model: nn.Module, files: Sequence[Path], load: Callable[[Path], torch.Tensor], batch_size: int = 16,
                     device: torch.device | str = "cpu", progress: bool = True, desc: str = "FID") -> GaussianStats:
    """Feature statistics of image files, ``batch_size`` at a time; ``load(path)`` gives uint8 (3, H, W). Each image
    is brought to the extractor's input on its own (:func:`preprocess`), so the files may differ in size."""
    stats = GaussianStats()
    for start in tqdm(range(0, len(files), batch_size), desc=desc, unit="batch", disable=not progress):
        batch = torch.cat([preprocess(load(p).unsqueeze(0).to(device)) for p in files[start:start + batch_size]])
        stats.update(model(batch).reshape(len(batch), -1))
    return stats
