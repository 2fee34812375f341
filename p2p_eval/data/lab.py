"""CIE Lab for colorization (pix2pix appendix 6.2: the generator maps lightness L, 1 channel, to the two colour
channels ab, 2 channels; the output image is L recombined with the predicted ab).

Scaling as the public PyTorch pix2pix code's colorization data set: L in [0, 100] -> ``L / 50 - 1``, a and b ->
``ab / 110`` (sRGB's a and b stay inside [-110, 110]), both in the generator's [-1, 1] range. The conversions are
scikit-image's (``skimage.color.rgb2lab`` / ``lab2rgb``: D65, sRGB).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skimage.color import lab2rgb, rgb2lab

from p2p_eval.imageio import from_unit_range, to_unit_range

L_SCALE = 50.0
AB_SCALE = 110.0


def split_lab(photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, ab) of an RGB image in [-1, 1] (3, H, W), scaled to [-1, 1]: shapes (1, H, W) and (2, H, W)."""
    rgb = ((photo.float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    lab = torch.from_numpy(rgb2lab(rgb).astype(np.float32)).permute(2, 0, 1)
    return lab[:1] / L_SCALE - 1, lab[1:] / AB_SCALE


def join_lab(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The RGB image in [-1, 1] (3, H, W) of scaled L (1, H, W) and ab (2, H, W); colours outside sRGB are
    clipped (scikit-image's warning about it is silenced: clipping is the intended behaviour here)."""
    lab = torch.cat([(lightness.float() + 1) * L_SCALE, ab.float() * AB_SCALE]).permute(1, 2, 0).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rgb = lab2rgb(lab.astype(np.float64))
    return torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1) * 2 - 1


def grey_of(photo: torch.Tensor) -> torch.Tensor:
    """A uint8 RGB photo's lightness as a neutral grey uint8 RGB image (L kept, a = b = 0)."""
    return from_unit_range(rgb_of(split_lab(to_unit_range(photo))[0]))


def rgb_of(lightness: torch.Tensor, ab: torch.Tensor | None = None) -> torch.Tensor:
    """The RGB image in [-1, 1] of scaled L and ab, or of L alone as a neutral grey (``ab`` None)."""
    return join_lab(lightness, torch.zeros_like(lightness).expand(2, -1, -1) if ab is None else ab)
