"""Image files in and out, through torchvision.io (decode_image / encode_png).

Images are uint8 tensors of shape (C, H, W), RGB (C = 3) unless a single-channel PNG is asked for.
Every failure is a :class:`~p2p_eval.errors.UserError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image, encode_png

from p2p_eval.errors import UserError, require_dir
from p2p_eval.fsutil import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def list_images(folder: str | Path, what: str = "image folder") -> list[Path]:
    """Image files directly inside ``folder``, sorted naturally (2.png before 10.png)."""
    folder = require_dir(folder, what)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=natural_key)


def natural_key(path: str | Path) -> tuple:
    """Sort key that orders embedded integers numerically: ``2.jpg`` < ``10.jpg``."""
    import re

    name = Path(path).name
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def read_image(path: str | Path, mode: str = "rgb") -> torch.Tensor:
    """Decode ``path`` to a uint8 (C, H, W) tensor; ``mode`` is ``rgb``, ``gray`` or ``unchanged``."""
    path = Path(path)
    modes = {"rgb": ImageReadMode.RGB, "gray": ImageReadMode.GRAY, "unchanged": ImageReadMode.UNCHANGED}
    try:
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        image = decode_image(data, mode=modes[mode])
    except FileNotFoundError as exc:
        raise UserError(f"image not found: {path}") from exc
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"cannot read image {path}: {exc}; is it a valid PNG or JPEG?") from exc
    if image.dtype != torch.uint8:
        raise UserError(f"{path} is a {image.dtype} image; only 8-bit images are supported")
    return image


def write_png(path: str | Path, image: torch.Tensor) -> Path:
    """Write a uint8 (C, H, W) or (H, W) tensor as a lossless PNG, atomically."""
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.dtype != torch.uint8:
        raise ValueError(f"write_png needs uint8, got {image.dtype}")
    return atomic_write_bytes(path, encode_png(image.cpu().contiguous()).numpy().tobytes())


def to_unit_range(image: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the generator's range."""
    return image.float().div(127.5).sub(1.0)


def from_unit_range(image: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] with rounding and clamping."""
    return image.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
