"""LPIPS (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features") from LOCAL weights.

Reference: the ``lpips`` package v0.1 (as vendored in ``torchmetrics.functional.image.lpips``): inputs in
[-1, 1] pass the scaling layer ``(x - shift) / scale``, the backbone gives feature maps at K layers, each
is unit-normalised over channels (``x / sqrt(1e-8 + sum x^2)``, torchmetrics' form), the squared difference is weighted per
channel by a non-negative linear layer (a 1x1 conv without bias), averaged over space and summed over
the layers.  0 for identical images; lower = more similar.  Seed 003 uses it for diversity: the mean
LPIPS between pairs of outputs for the same input (higher = more diverse).

Weights (nothing is downloaded; ``torchvision.models.alexnet(weights=None)``):

- backbone: torchvision's AlexNet state dict ``alexnet-owt-7be5be79.pth`` (features at relu1..relu5, as
  LPIPS-alex), or a TorchScript module returning a tuple/list of feature maps;
- linear layers: LPIPS v0.1 ``alex.pth`` (keys ``lin{k}.model.1.weight``, shape (1, C, 1, 1)); by default
  the copy installed with torchmetrics (``torchmetrics/functional/image/lpips_models/alex.pth``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from p2p_eval.errors import UserError, require_file
from p2p_eval.metrics.fid import is_torchscript, load_state_dict

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
