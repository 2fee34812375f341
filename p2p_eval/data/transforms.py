"""Paired image transforms: the pix2pix jitter, applied identically to input and target.

Matches the paper (section 6.1 / appendix): resize 256 -> 286 (bicubic, as the public code), random crop 256, random mirror, and the
public code's ``--preprocess resize_and_crop`` with ``load_size = 286``, ``crop_size = 256`` and
``--no_flip`` off.  For other sizes the load size is ``round(size * 286 / 256)``.  Built on
torchvision.transforms.v2: both images are :class:`tv_tensors.Image`, so one call samples one crop and
one flip and applies them to both.  Outputs are float tensors in [-1, 1].  ``mirror`` (default: with the jitter)
mirrors on its own, without the resize-and-crop: the paper's colorization setting ("with only mirroring, no
random jitter").
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2


def load_size(size: int) -> int:
    """The jitter's resize target for crop ``size``: 286 for 256, scaled proportionally otherwise."""
    return round(size * 286 / 256)


class PairTransform:
    """Callable ``(a, b) -> (a', b')`` on uint8 (C, H, W) tensors; same random parameters for both."""

    def __init__(self, size: int, jitter: bool, mirror: bool | None = None) -> None:
        self.size = size
        self.jitter = jitter
        self.mirror = jitter if mirror is None else mirror
        resize = load_size(size) if jitter else size
        steps: list[v2.Transform] = [v2.Resize((resize, resize), interpolation=InterpolationMode.BICUBIC, antialias=True)]
        if jitter:
            steps.append(v2.RandomCrop(size))
        if self.mirror:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)]
        self.transform = v2.Compose(steps)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_a, out_b = self.transform(tv_tensors.Image(a), tv_tensors.Image(b))
        return out_a.as_subclass(torch.Tensor), out_b.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"PairTransform(size={self.size}, jitter={self.jitter}, mirror={self.mirror})"


def pair_transform(size: int = 256, jitter: bool = False, mirror: bool | None = None) -> PairTransform:
    """The pix2pix transform for a pair: jitter (resize to load_size, random crop), random flip (``mirror``, by
    default with the jitter), or resize only."""
    return PairTransform(size, jitter, mirror)
