"""Frames for the segmenter: real photos and their train ids, from an AB data folder or the official
Cityscapes layout, one at a time (:class:`SegmentationPairs`) or all in memory (:func:`preload`).

Label maps are never interpolated: resizing is nearest neighbour.  Colour label maps (pix2pix's B
halves) become train ids by nearest palette colour (:func:`p2p_eval.data.cityscapes.colors_to_trainids`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from p2p_eval.data.aligned import ab_half
from p2p_eval.data.cityscapes import ab_frames, colors_to_trainids, load_label_map, official_frames, resize_nearest
from p2p_eval.errors import UserError, require_dir
from p2p_eval.fsutil import atomic_torch_save
from p2p_eval.imageio import read_image


@dataclass(frozen=True)
class Pair:
    """One frame: where its photo and its labels come from.

    ``photo_kind`` / ``label_kind``: ``"ab_left"`` / ``"ab_right"`` (a half of an AB image) or ``"file"``.
    """

    name: str
    photo: Path
    photo_kind: str
    label: Path
    label_kind: str


def data_layout(data_dir: Path) -> str:
    """``official`` (leftImg8bit/ + gtFine/) or ``ab`` (DIR/SPLIT/*.png|jpg)."""
    return "official" if (Path(data_dir) / "leftImg8bit").is_dir() else "ab"


def split_pairs(data_dir: str | Path, split: str) -> list[Pair]:
    """The frames of one split, photos -> labels, for the AB layout or the official Cityscapes layout.

    AB: photo = left half of DIR/SPLIT/NAME; labels = DIR/SPLIT_labels/NAME.png if that folder exists,
    else the right half's colours (:func:`p2p_eval.data.cityscapes.ab_frames`).  Official:
    leftImg8bit/SPLIT/CITY/F_leftImg8bit.png with gtFine/SPLIT/CITY/F_gtFine_labelIds.png
    (:func:`p2p_eval.data.cityscapes.official_frames`).
    """
    data_dir = require_dir(data_dir, "data folder")
    if data_layout(data_dir) == "official":
        frames = official_frames(data_dir, split)
        if not frames:
            raise UserError(f"no photos in {data_dir / 'leftImg8bit' / split}/CITY/*_leftImg8bit.png")
        return [Pair(frame, photo, "file", label, "file") for frame, photo, label in frames]
    return [Pair(name, image, "ab_left", image, "ab_right") if label is None else Pair(name, image, "ab_left", label, "file")
            for name, image, label in ab_frames(data_dir, split)]


def read_photo(pair: Pair) -> torch.Tensor:
    """The photo of a frame, uint8 (3, H, W)."""
    image = read_image(pair.photo)
    return ab_half(image, pair.photo, "A") if pair.photo_kind == "ab_left" else image


def read_label(pair: Pair, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """The train ids of a frame, uint8 (H, W), resized with nearest neighbour to ``size`` (a side or (H, W))
    when given."""
    if pair.label_kind == "file":
        return torch.from_numpy(np.ascontiguousarray(load_label_map(pair.label, size)))
    ids = torch.from_numpy(colors_to_trainids(ab_half(read_image(pair.label), pair.label, "B")))
    return ids if size is None else resize_nearest(ids, size)


def resize_photo(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, size, size) or (3, *size) for size = (height, width), bilinear with
    antialiasing (which only acts when shrinking)."""
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(image.shape[-2:]) == hw:
        return image
    return TF.resize(image, list(hw), antialias=True)


class SegmentationPairs(torch.utils.data.Dataset):
    """(photo uint8 (3, S, S), train ids uint8 (S, S)) pairs at the scoring size S (a side, or (height, width)
    for non-square frames), no augmentation.

    ``through`` (a side in pixels) first resizes each photo to ``through`` x ``through`` and keeps it as
    uint8, as a generator of that resolution writes its outputs: real photos then pass through the same
    resolution bottleneck as the generated ones before the segmenter sees them at S.
    """

    def __init__(self, pairs: list[Pair], size: int | tuple[int, int], through: int | None = None) -> None:
        self.pairs, self.size, self.through = pairs, size, through

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        photo = read_photo(pair)
        if self.through is not None:
            photo = resize_photo(photo, self.through)
        return {"image": resize_photo(photo, self.size), "label": read_label(pair, self.size),
                "name": pair.name, "index": index}


def default_workers() -> int:
    """DataLoader workers: the CPU count minus one for the main process, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def preload(pairs: list[Pair], size: int | tuple[int, int], cache_dir: str | Path | None = None,
            progress: bool = True, num_workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All frames decoded at ``size`` x ``size`` (or ``size`` = (height, width)): photos uint8 (N, 3, H, W),
    train ids uint8 (N, H, W).

    Decoding 2975 Cityscapes frames (JPEG + nearest-palette labels) takes about a minute on two cores,
    so the arrays are cached in ``cache_dir`` under a key of the files' paths, sizes and mtimes (a changed
    file gives a new key); ``cache_dir=None`` keeps nothing.
    """
    key = hashlib.sha256(repr(size).encode())
    for p in pairs:
        for f in {p.photo, p.label}:
            st = f.stat()
            key.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    shape = size if isinstance(size, int) else f"{size[1]}x{size[0]}"
    cache = Path(cache_dir) / f"frames-{shape}-{key.hexdigest()[:20]}.pt" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        try:
            data = torch.load(cache, map_location="cpu", weights_only=True)
            return data["photos"], data["labels"]
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt
            cache.unlink(missing_ok=True)
    loader = torch.utils.data.DataLoader(SegmentationPairs(pairs, size), batch_size=32, shuffle=False,
                                         num_workers=default_workers() if num_workers is None else num_workers)
    photos, labels = [], []
    for batch in tqdm(loader, desc="decode frames", unit="batch", disable=None if progress else True):
        photos.append(batch["image"])
        labels.append(batch["label"])
    out = torch.cat(photos), torch.cat(labels)
    if cache is not None:
        atomic_torch_save({"photos": out[0], "labels": out[1]}, cache)
    return out
