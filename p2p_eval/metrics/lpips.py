"""LPIPS (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features") from LOCAL weights.

Reference: the ``lpips`` package v0.1 (as vendored in ``torchmetrics.functional.image.lpips``): inputs in
[-1, 1] pass the scaling layer ``(x - shift) / scale``, the backbone gives feature maps at K layers, each
is unit-normalised over channels (``x / sqrt(1e-8 + sum x^2)``, torchmetrics' form), the squared difference is weighted per
channel by a non-negative linear layer (a 1x1 conv without bias), averaged over space and summed over
the layers.  0 for identical images; lower = more similar.

LPIPS diversity, as the one-to-many document ("Unsupervised Image-to-Image Translation Using Domain-Specific
Variational Information Bound", section 6.2, after BicycleGAN) measures it: "the average distance between 2000
pairs of randomly generated output images" of the same input; higher = more diverse.  It reads a folder of
samples, ``<input name>_sample<k>.png`` (``translate --samples K``, :func:`sample_groups`); each of the
``pairs`` draws (:func:`draw_pairs`, ``random.Random(seed)``, with replacement) picks an input with two or more
samples uniformly, then two different samples of it uniformly.  :func:`score_samples` scores such folders:
LPIPS diversity, and FID of all their samples against the real images (:mod:`.fid`).

Weights (nothing is downloaded; ``torchvision.models.alexnet(weights=None)``):

- backbone: torchvision's AlexNet state dict ``alexnet-owt-7be5be79.pth`` (features at relu1..relu5, as
  LPIPS-alex), or a TorchScript module returning a tuple/list of feature maps;
- linear layers: LPIPS v0.1 ``alex.pth`` (keys ``lin{k}.model.1.weight``, shape (1, C, 1, 1)); by default
  the copy installed with torchmetrics (``torchmetrics/functional/image/lpips_models/alex.pth``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError, file_list, require_file
from p2p_eval.fsutil import write_json
from p2p_eval.imageio import list_images
from p2p_eval.metrics.fid import (FID_ENV, FID_HELP, files_statistics, frechet_distance, is_torchscript,
                                  load_fid_extractor, load_state_dict, weights_path)

LPIPS_ENV = "P2P_EVAL_LPIPS_WEIGHTS"
LPIPS_HELP = (f"LPIPS needs AlexNet weights on disk: download torchvision's "
              f"https://download.pytorch.org/models/alexnet-owt-7be5be79.pth yourself and pass --lpips-weights PATH "
              f"or set {LPIPS_ENV}=PATH (linear layers: --lpips-lin PATH, default torchmetrics' installed alex.pth); "
              f"nothing is downloaded automatically")
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
ALEX_CUTS = (2, 5, 8, 10, 12)  # LPIPS-alex taps torchvision's alexnet.features after these indices (relu1..relu5)


class AlexTaps(nn.Module):
    """torchvision AlexNet's ``features`` returning the five ReLU outputs LPIPS uses."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import alexnet  # here: torchvision.models is slow to import, LPIPS is rare

        self.features = alexnet(weights=None).features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for cut in ALEX_CUTS:
            x = self.features[start:cut](x)
            out.append(x)
            start = cut
        return out


class LPIPS(nn.Module):
    """LPIPS distance between two batches in [-1, 1]; ``forward`` returns (N,) distances."""

    higher_is_better = False

    def __init__(self, backbone: nn.Module, lin_weights: list[torch.Tensor]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.lins = nn.ParameterList([nn.Parameter(w.reshape(1, -1, 1, 1).float(), requires_grad=False) for w in lin_weights])

    @torch.no_grad()
    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        f0 = self.backbone((x0 - self.shift) / self.scale)
        f1 = self.backbone((x1 - self.shift) / self.scale)
        if len(f0) != len(self.lins):
            raise UserError(f"the LPIPS backbone gives {len(f0)} feature maps but the linear layers are {len(self.lins)}")
        total = torch.zeros(len(x0), device=x0.device)
        for a, b, w in zip(f0, f1, self.lins):
            a = a / torch.sqrt(1e-8 + (a * a).sum(1, keepdim=True))
            b = b / torch.sqrt(1e-8 + (b * b).sum(1, keepdim=True))
            total += ((a - b) ** 2 * w).sum(1).mean((1, 2))
        return total


def default_lin_path() -> Path | None:
    """torchmetrics' installed copy of LPIPS v0.1 ``alex.pth``, if present."""
    import torchmetrics.functional.image as tmi  # here: torchmetrics is slow to import; only its file is wanted

    path = Path(tmi.__file__).parent / "lpips_models" / "alex.pth"
    return path if path.is_file() else None


def load_lin_weights(path: str | Path) -> list[torch.Tensor]:
    """The K linear-layer weight vectors of an LPIPS ``*.pth`` (keys ``lin{k}.model.{0|1}.weight``), in order."""
    path = require_file(path, "LPIPS linear-layer weights file")
    state = load_state_dict(path)
    found = {int(m.group(1)): v for k, v in state.items() if (m := re.fullmatch(r"lin(\d+)\.model\.\d+\.weight", k))}
    if not found or sorted(found) != list(range(len(found))):
        raise UserError(f"{path} has no LPIPS linear layers (keys lin0.model.1.weight, ...); use LPIPS v0.1 alex.pth")
    return [found[k].flatten() for k in range(len(found))]


def load_lpips(backbone_path: str | Path, lin_path: str | Path | None = None, device: torch.device | str = "cpu") -> LPIPS:
    """LPIPS from a backbone file (AlexNet state dict or TorchScript) and linear layers (default torchmetrics')."""
    backbone_path = require_file(backbone_path, "LPIPS backbone weights file")
    if is_torchscript(backbone_path):
        backbone: nn.Module = torch.jit.load(str(backbone_path), map_location="cpu")
    else:
        backbone = AlexTaps()
        state = load_state_dict(backbone_path)
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            backbone.features.load_state_dict(features)
        except RuntimeError as exc:
            raise UserError(f"{backbone_path} is not a torchvision AlexNet state dict. {LPIPS_HELP}") from exc
    lin_path = lin_path if lin_path is not None else default_lin_path()
    if lin_path is None:
        raise UserError("no LPIPS linear layers: pass --lpips-lin PATH to LPIPS v0.1 alex.pth "
                        "(github.com/richzhang/PerceptualSimilarity, lpips/weights/v0.1/alex.pth)")
    return LPIPS(backbone, load_lin_weights(lin_path)).eval().to(device)


#: The stem of a file in a folder of samples (``translate --samples K``): ``<input name>_sample<k>``.
SAMPLE_STEM = re.compile(r"(?P<input>.+)_sample(?P<k>[0-9]+)")
#: The document's number of random pairs.
DIVERSITY_PAIRS = 2000
#: What :func:`score_samples` computes on a folder of samples.
SAMPLE_METRICS = ("fid", "lpips-diversity")


def sample_groups(folder: str | Path, name: str = "images") -> dict[str, list[Path]]:
    """The images of a folder of samples by input name (inputs sorted by name, samples by k); a UserError when
    the folder has no images or some file is not named ``<input name>_sample<k>``."""
    files = list_images(folder, f"--images folder ({name})")
    if not files:
        raise UserError(f"--images folder {folder} ({name}) has no images (.png/.jpg)")
    groups: dict[str, list[tuple[int, Path]]] = {}
    others = []
    for path in files:
        match = SAMPLE_STEM.fullmatch(path.stem)
        if match is None:
            others.append(path.name)
        else:
            groups.setdefault(match["input"], []).append((int(match["k"]), path))
    if others:
        raise UserError(f"--images {folder} ({name}) is not a folder of samples: {file_list(others)} not named "
                        "<input name>_sample<k>.png; write one with p2p-eval translate --samples K (K >= 2)")
    return {key: [p for _, p in sorted(groups[key])] for key in sorted(groups)}


def is_sample_folder(folder: str | Path) -> bool:
    """True when ``folder`` is a folder holding images and every one is named ``<input name>_sample<k>``."""
    if not Path(folder).is_dir():
        return False
    stems = [p.stem for p in list_images(folder, "--images folder")]
    return bool(stems) and all(SAMPLE_STEM.fullmatch(s) for s in stems)


def draw_pairs(groups: Mapping[str, Sequence[Path]], pairs: int = DIVERSITY_PAIRS, seed: int = 0) -> list[tuple[Path, Path]]:
    """``pairs`` random pairs of different samples of one input: an input with two or more samples uniformly,
    then two of its samples uniformly without repetition (``random.Random(seed)``; pairs drawn with replacement)."""
    eligible = [list(samples) for _, samples in sorted(groups.items()) if len(samples) >= 2]
    if not eligible:
        raise UserError("LPIPS diversity needs inputs with two or more samples; translate with --samples K, K >= 2")
    rng = random.Random(seed)
    drawn = []
    for _ in range(pairs):
        samples = eligible[rng.randrange(len(eligible))]
        i, j = rng.sample(range(len(samples)), 2)
        drawn.append((samples[i], samples[j]))
    return drawn


class DiversityMean:
    """Accumulator of LPIPS distances between pairs of samples: count, sum and sum of squares (float64); merges."""

    higher_is_better = True

    def __init__(self) -> None:
        self.n, self.total, self.squares = 0, 0.0, 0.0

    def update(self, distances: torch.Tensor) -> None:
        d = distances.detach().double().cpu()
        self.n += d.numel()
        self.total += float(d.sum())
        self.squares += float((d * d).sum())

    def merge(self, other: DiversityMean) -> DiversityMean:
        self.n, self.total, self.squares = self.n + other.n, self.total + other.total, self.squares + other.squares
        return self

    def compute(self) -> dict[str, float | int | None]:
        """Mean, sample standard deviation and standard error of the mean (None below two pairs), count."""
        if self.n == 0:
            raise UserError("LPIPS diversity of no pairs")
        mean = self.total / self.n
        std = math.sqrt(max(self.squares - self.n * mean * mean, 0.0) / (self.n - 1)) if self.n > 1 else None
        return {"mean": mean, "std": std, "sem": std / math.sqrt(self.n) if std is not None else None, "count": self.n}


@torch.no_grad()
def lpips_diversity(model: nn.Module, pairs: Sequence[tuple[Path, Path]], load: Callable[[Path], torch.Tensor],
                    batch_size: int = 16, device: torch.device | str = "cpu", progress: bool = True) -> DiversityMean:
    """LPIPS distances of the image pairs (``load(path)`` gives uint8 (3, H, W)), ``batch_size`` pairs at a time."""
    acc = DiversityMean()
    for start in tqdm(range(0, len(pairs), batch_size), desc="LPIPS diversity", unit="batch", disable=not progress):
        chunk = pairs[start:start + batch_size]
        a, b = (_batch([load(pair[side]) for pair in chunk], chunk) for side in (0, 1))
        acc.update(model(a.to(device).float().div(127.5).sub(1.0), b.to(device).float().div(127.5).sub(1.0)))
    return acc


def _batch(images: list[torch.Tensor], chunk: Sequence[tuple[Path, Path]]) -> torch.Tensor:
    shapes = sorted({tuple(t.shape) for t in images})
    if len(shapes) > 1:
        raise UserError(f"samples {file_list([p.name for pair in chunk for p in pair])} differ in size {shapes}; "
                        "pass --size S")
    return torch.stack(images)


def score_samples(real_dir: str | Path, fakes: Mapping[str, str | Path], metrics: Sequence[str], opts: Any) -> dict:
    """FID (all samples against all real images) and LPIPS diversity (``opts.pairs`` random pairs drawn with
    ``opts.seed``) of folders of samples, in the result layout of :func:`p2p_eval.metrics.image.compare_folders`.

    ``opts`` is a :class:`p2p_eval.metrics.image.CompareOptions` (weights files, ``half``, ``size``, device, batch
    size, ``json_out``, progress, ``pairs``, ``seed``). Every sample's input must have a real image (by name).
    """
    from p2p_eval.metrics.color import load_photo  # here: as image.py, which imports this module

    other = [m for m in metrics if m not in SAMPLE_METRICS]
    if other:
        raise UserError(f"{', '.join(other)}: not for a folder of samples (<input name>_sample<k>.png), which takes "
                        f"{', '.join(SAMPLE_METRICS)}; score one output per input (translate --samples 1) for those")
    real = list_images(real_dir, "--real folder")
    if not real:
        raise UserError(f"--real folder {real_dir} has no images (.png/.jpg)")
    groups = {name: sample_groups(folder, name) for name, folder in fakes.items()}
    for name, group in groups.items():
        unknown = sorted(set(group) - {p.stem for p in real})
        if unknown:
            raise UserError(f"--images {fakes[name]} ({name}): samples of {file_list(unknown)}, which have no image in "
                            f"--real {real_dir}; name each sample after its input")
    dev = resolve_device(opts.device)
    result: dict = {"metrics": {name: {} for name in groups}, "real": str(real_dir),
                    "fake": {name: str(folder) for name, folder in fakes.items()}, "data_range": 255.0,
                    "half": opts.half, "size": opts.size, "images": len(real),
                    "samples": {name: {"inputs": len(g), "images": sum(map(len, g.values()))} for name, g in groups.items()}}
    if "fid" in metrics:
        weights = weights_path(opts.fid_weights, FID_ENV, FID_HELP)
        model = load_fid_extractor(weights, dev)
        stats = files_statistics(model, real, lambda p: load_photo(p, opts.half, opts.size), opts.batch_size, dev,
                                 opts.progress, "FID real")
        for name, group in groups.items():
            files = [p for samples in group.values() for p in samples]
            fake = files_statistics(model, files, lambda p: load_photo(p, None, opts.size), opts.batch_size, dev,
                                    opts.progress, f"FID {name}")
            result["metrics"][name]["fid"] = {"value": frechet_distance(*stats.compute(), *fake.compute()),
                                              "higher_is_better": False, "weights": str(weights), "images": len(files)}
    if "lpips-diversity" in metrics:
        model = load_lpips(weights_path(opts.lpips_weights, LPIPS_ENV, LPIPS_HELP), opts.lpips_lin, dev)
        for name, group in groups.items():
            acc = lpips_diversity(model, draw_pairs(group, opts.pairs, opts.seed), lambda p: load_photo(p, None, opts.size),
                                  opts.batch_size, dev, opts.progress)
            result["metrics"][name]["lpips-diversity"] = {**acc.compute(), "higher_is_better": True, "seed": opts.seed,
                                                          "inputs": sum(len(v) >= 2 for v in group.values())}
    if opts.json_out is not None:
        write_json(opts.json_out, result)
    return result
