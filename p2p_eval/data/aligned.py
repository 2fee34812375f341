"""Aligned image pairs: pix2pix's "AB" files (A | B side by side) and two parallel folders of A and B.

Matches the public pix2pix code's ``AlignedDataset`` (``data/aligned_dataset.py``): the left half of a
2W x H image is A, the right half B; ``direction`` AtoB makes A the input, BtoA makes B the input; both
go through the same transform (:mod:`p2p_eval.data.transforms`) and come out in [-1, 1].  With ``color_space``
"lab" (colorization, :mod:`p2p_eval.data.lab`) the input is the target photo's lightness L and the
target its ab channels; the source half is not read.  Files are read
with torchvision.io; sizes are checked up front from the file headers so that a bad file is reported
before any training starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from p2p_eval.config import TrainConfig
from p2p_eval.data.lab import split_lab
from p2p_eval.data.transforms import pair_transform
from p2p_eval.errors import UserError, file_list, require_dir
from p2p_eval.imageio import list_images, read_image, write_png

DIRECTIONS = ("AtoB", "BtoA")
Item = dict[str, torch.Tensor | str | int]


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise UserError(f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"cannot read image {path}: {exc}; is it a valid PNG or JPEG?") from exc


def split_ab(image: torch.Tensor, path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The (A, B) halves of an AB image (..., H, 2W): A on the left, B on the right.

    An odd width is a UserError naming ``path``.  The one place that cuts AB images in two.
    """
    w = image.shape[-1]
    if w % 2:
        raise UserError(f"{path} is {w} pixels wide; an AB image needs an even width (A | B side by side)")
    return image[..., : w // 2], image[..., w // 2:]


def ab_half(image: torch.Tensor, path: str | Path, half: str) -> torch.Tensor:
    """The ``"A"`` (left) or ``"B"`` (right) half of an AB image; see :func:`split_ab`."""
    if half not in ("A", "B"):
        raise ValueError(f"half must be 'A' or 'B', got {half!r}")
    return split_ab(image, path)[0 if half == "A" else 1]


def _images(folder: Path, what: str) -> list[Path]:
    files = list_images(folder, what)
    if not files:
        raise UserError(f"{what} {folder} holds no PNG or JPEG images")
    return files


class _PairDataset(Dataset, ABC):
    """Shared item assembly: (A, B) uint8 -> transformed (input, target) dict."""

    direction: str
    files: list[Path]

    def __init__(self, direction: str, size: int, jitter: bool, mirror: bool | None = None,
                 color_space: str = "rgb") -> None:
        _check_direction(direction)
        if size < 1:
            raise UserError(f"image size must be positive, got {size}")
        self.direction = direction
        self.size = size
        self.jitter = jitter
        self.color_space = color_space
        self.transform = pair_transform(size, jitter, mirror)

    def __len__(self) -> int:
        return len(self.files)

    @abstractmethod
    def _pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 (A, B) images of item ``index``."""

    def __getitem__(self, index: int) -> Item:
        a, b = self._pair(index)
        src, dst = (a, b) if self.direction == "AtoB" else (b, a)
        inp, target = self.transform(src, dst)
        if self.color_space == "lab":
            inp, target = split_lab(target)
        return {"input": inp, "target": target, "name": self.files[index].stem, "index": index}


class AlignedDataset(_PairDataset):
    """Side-by-side AB images in ``root/split`` (or ``root`` itself when ``split`` is None)."""

    def __init__(self, root: str | Path, split: str | None = "train", direction: str = "AtoB", size: int = 256,
                 jitter: bool = False, mirror: bool | None = None, color_space: str = "rgb") -> None:
        super().__init__(direction, size, jitter, mirror, color_space)
        root = require_dir(root, "data folder")
        folder = require_dir(root / split, f"{split!r} split folder") if split else root
        self.root = folder
        self.files = _images(folder, "AB image folder")
        odd = [f"{p.name} ({w}x{h})" for p in self.files for w, h in [image_size(p)] if w % 2]
        if odd:
            raise UserError(f"AB images in {folder} need an even width (A | B side by side); odd: {file_list(odd)}")

    def _pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.files[index]
        return split_ab(read_image(path), path)


class FolderPairDataset(_PairDataset):
    """Two parallel folders; ``dir_a/NAME.*`` pairs with ``dir_b/NAME.*`` (matched by file stem)."""

    def __init__(self, dir_a: str | Path, dir_b: str | Path, direction: str = "AtoB", size: int = 256,
                 jitter: bool = False) -> None:
        super().__init__(direction, size, jitter)
        files_a = _images(require_dir(dir_a, "A folder"), "A folder")
        files_b = _images(require_dir(dir_b, "B folder"), "B folder")
        by_stem_a, by_stem_b = _by_stem(files_a), _by_stem(files_b)
        only_a = [p.name for s, p in by_stem_a.items() if s not in by_stem_b]
        only_b = [p.name for s, p in by_stem_b.items() if s not in by_stem_a]
        if only_a or only_b:
            parts = [f"{len(only_a)} in {dir_a} without a partner in {dir_b}: {file_list(only_a)}"] if only_a else []
            parts += [f"{len(only_b)} in {dir_b} without a partner in {dir_a}: {file_list(only_b)}"] if only_b else []
            raise UserError("unpaired images (pairs are matched by file name): " + "; ".join(parts))
        self.files = files_a
        self.partners = [by_stem_b[p.stem] for p in files_a]
        wrong = [f"{a.name} {image_size(a)} vs {b.name} {image_size(b)}" for a, b in zip(self.files, self.partners)
                 if image_size(a) != image_size(b)]
        if wrong:
            raise UserError(f"paired images differ in size ({dir_a} vs {dir_b}): {file_list(wrong)}")

    def _pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = read_image(self.files[index]), read_image(self.partners[index])
        if a.shape != b.shape:
            raise UserError(f"{self.files[index]} and {self.partners[index]} differ in size")
        return a, b


def _by_stem(files: list[Path]) -> dict[str, Path]:
    """Map stem -> file; two files with one stem (``1.png`` and ``1.jpg``) are ambiguous."""
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise UserError(f"two images named {p.stem!r} in {p.parent}: {out[p.stem].name} and {p.name}; keep one")
        out[p.stem] = p
    return out


def config_dataset(data_dir: str | Path, split: str, cfg: TrainConfig, training: bool = False,
                   size: int | None = None) -> AlignedDataset:
    """The AB images of ``data_dir/split`` as run ``cfg`` reads them: its direction, size (or ``size``) and colour
    space; jitter and mirroring only when ``training``."""
    return AlignedDataset(data_dir, split, direction=cfg.direction, size=size or cfg.size,
                          jitter=cfg.jitter and training, mirror=cfg.mirror if training else False,
                          color_space=cfg.color_space)


def write_halves(data_dir: str | Path, split: str, half: str, out: str | Path, progress: bool = True) -> list[Path]:
    """Write the ``half`` ("A" or "B") of every AB image in ``data_dir/split`` to ``out/<name>.png`` (lossless);
    returns the written paths (e.g. the real photos of a "real vs fake" study or an FID reference set)."""
    from tqdm import tqdm  # only this helper draws a bar

    folder = require_dir(Path(data_dir) / split, f"{split!r} split folder")
    files = _images(folder, "AB image folder")
    Path(out).mkdir(parents=True, exist_ok=True)
    return [write_png(Path(out) / f"{p.stem}.png", ab_half(read_image(p), p, half).contiguous())
            for p in tqdm(files, desc=f"{half} halves", unit="img", disable=None if progress else True)]
