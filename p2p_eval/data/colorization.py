"""Colorization data (pix2pix section 4, "BW -> color"): :func:`prepare_colorization` turns a folder of colour
photos into pix2pix's AB layout. A is the photo's lightness shown as a neutral grey (what the generator sees,
:mod:`p2p_eval.data.lab`, and what a sample grid or a "real vs fake" study shows as the input), B the colour
photo, so a colorization set is an ordinary AB set, trained ``AtoB`` with ``color_space = "lab"``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from p2p_eval.data.aligned import ab_half
from p2p_eval.data.lab import grey_of
from p2p_eval.errors import UserError, require_dir
from p2p_eval.imageio import list_images, read_image, write_png

SPLITS = ("train", "val", "test")


def _photo_folders(photos: Path) -> dict[str, Path]:
    """The split folders under ``photos`` (train/, val/, test/ that exist), else {"": photos}."""
    splits = {s: photos / s for s in SPLITS if (photos / s).is_dir()}
    return splits or {"": photos}


def _assign_splits(folders: dict[str, Path], val_fraction: float) -> list[tuple[str, Path]]:
    """(split, photo) for every photo: the folder's split, or for a flat folder every k-th photo in sorted name
    order in val/ (k = round(1 / val_fraction)), the rest in train/."""
    if "" not in folders:
        return [(split, p) for split, folder in folders.items() for p in list_images(folder, f"{split} photo folder")]
    files = list_images(folders[""], "photo folder")
    every = round(1 / val_fraction) if val_fraction > 0 else 0
    return [("val" if every and i % every == every - 1 else "train", p) for i, p in enumerate(files)]


def prepare_colorization(photos: str | Path, out: str | Path, size: int = 256, half: str | None = None,
                         val_fraction: float = 0.1, progress: bool = True) -> dict[str, int]:
    """Write ``out/<split>/<name>.png`` = grey L | colour photo, each ``size`` x ``size`` (bicubic resize, as the
    pix2pix data sets: non-square photos are squeezed); returns photos per split.

    ``half`` "A" / "B": the photos are that half of AB images (e.g. pix2pix's Cityscapes and Facades: the photo
    is A). Split folders under ``photos`` are kept; a flat folder is split by ``val_fraction``."""
    folder = require_dir(photos, "photo folder")
    jobs = _assign_splits(_photo_folders(folder), val_fraction)
    if not jobs:
        raise UserError(f"photo folder {folder} holds no PNG or JPEG images")
    counts: dict[str, int] = {}
    for split, path in tqdm(jobs, desc="colorization pairs", unit="img", disable=None if progress else True):
        image = read_image(path)
        photo = ab_half(image, path, half) if half else image
        photo = F.resize(photo, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
        (Path(out) / split).mkdir(parents=True, exist_ok=True)
        write_png(Path(out) / split / f"{path.stem}.png", torch.cat([grey_of(photo), photo], dim=2))
        counts[split] = counts.get(split, 0) + 1
    return counts
