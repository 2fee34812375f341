"""Weight initialisation and normalisation layers shared by the generators and discriminators.

Matches the pix2pix public PyTorch code (``networks.init_weights`` with ``init_type='normal'``, gain 0.02)
and the paper's appendix: conv weights N(0, 0.02), batch-norm gamma N(1, 0.02), every bias 0.
Instance norm is the public code's (no affine parameters, no running statistics).
"""

from __future__ import annotations

import torch
from torch import nn


class OneValueSafeBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that, like the Torch original, accepts a single value per channel in training mode.

    The paper's bottleneck (errata 6.3) normalises a 1x1 map at batch size 1: the normalised value is then
    exactly zero and the layer outputs its bias (beta), with zero gradient through the input. PyTorch's
    BatchNorm2d refuses that case, so it is computed here explicitly; the running mean is still updated,
    the running variance (undefined for one value) is left unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.numel() != x.shape[1]:
            return super().forward(x)
        mean = x.mean(dim=(0, 2, 3))
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum if self.momentum is not None else 0.1)
                self.num_batches_tracked.add_(1)
        centred = x - mean.view(1, -1, 1, 1)  # exactly zero, gradient 1 - 1/n = 0 as in batch norm
        scale = self.weight / torch.sqrt(torch.tensor(self.eps, dtype=x.dtype, device=x.device))
        return centred * scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def norm_layer(kind: str, channels: int, *, one_value_safe: bool = False) -> nn.Module:
    """``batch`` -> BatchNorm2d, ``instance`` -> InstanceNorm2d (no affine, no stats), ``layer`` -> one group over
    channels and space (GroupNorm(1), no affine: unlike instance norm it keeps a per-channel constant, such as a
    tiled code), ``none`` -> Identity."""
    if kind == "batch":
        return OneValueSafeBatchNorm2d(channels) if one_value_safe else nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "layer":
        return nn.GroupNorm(1, channels, affine=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def conv_bias(norm: str) -> bool:
    """Convs followed by batch norm carry no bias (the norm's beta replaces it); otherwise they do."""
    return norm != "batch"


@torch.no_grad()
def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Conv / transposed-conv weights N(0, std), batch-norm gamma N(1, std), all biases 0 (in place)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


__all__ = ["OneValueSafeBatchNorm2d", "conv_bias", "init_weights", "norm_layer"]
