"""Unpaired training data: two image folders, one per domain, drawn independently (as CycleGAN draws them).

An epoch has max(len X, len Y) images of each domain: at its start :class:`UnpairedOrder` draws one permutation
of each folder (a shorter folder's permutation is repeated from its start to fill the epoch) and one mirror
coin per drawn image, all from its own ``torch.Generator``.  A checkpoint keeps the generator's state at the
start of the epoch and the number of steps done, which replays the rest of the epoch exactly.

Images are read once, resized to size x size (bilinear with antialiasing; a non-square image is squeezed) and
kept in memory as uint8; a drawn image is mirrored left-right when its coin says so (``mirror``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from p2p_eval.errors import UserError
from p2p_eval.imageio import list_images, read_image, to_unit_range


def load_resized(path: Path, size: int) -> torch.Tensor:
    """``path`` as a uint8 (3, size, size) tensor (bilinear, antialiased)."""
    image = read_image(path).float().unsqueeze(0)
    if image.shape[-2:] != (size, size):
        image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return image[0].round().clamp(0, 255).to(torch.uint8)


class ImageFolder:
    """The images directly inside ``folder`` (natural name order), resized to ``size``, read on first use."""

    def __init__(self, folder: str | Path, size: int, what: str) -> None:
        self.paths = list_images(folder, what)
        if not self.paths:
            raise UserError(f"{what} {folder} holds no images (.png, .jpg, ...); give a folder of images")
        self.size = size
        self.cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> torch.Tensor:
        """Image ``index`` as float (3, size, size) in [-1, 1]."""
        if index not in self.cache:
            self.cache[index] = load_resized(self.paths[index], self.size)
        return to_unit_range(self.cache[index])


class UnpairedOrder:
    """The draw order of both domains, epoch by epoch, from one seeded generator."""

    def __init__(self, count_x: int, count_y: int, seed: int) -> None:
        self.counts = (count_x, count_y)
        self.length = max(count_x, count_y)
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_state = self.generator.get_state()
        self.picks: list[tuple[int, int, bool, bool]] = []

    def start_epoch(self) -> None:
        """Draw this epoch's picks: (x index, y index, mirror x, mirror y) for each of ``length`` steps."""
        self.epoch_state = self.generator.get_state()
        orders = [torch.randperm(n, generator=self.generator).repeat(-(-self.length // n))[: self.length].tolist()
                  for n in self.counts]
        coins = (torch.rand(self.length, 2, generator=self.generator) < 0.5).tolist()
        self.picks = [(ix, iy, fx, fy) for ix, iy, (fx, fy) in zip(*orders, coins)]

    def state_dict(self) -> dict[str, Any]:
        """The generator's state at the start of the current epoch."""
        return {"epoch_state": self.epoch_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rewind to the start of the saved epoch; :meth:`start_epoch` redraws it."""
        self.generator.set_state(state["epoch_state"])


class UnpairedData:
    """Batches of (x, y) for training: ``batch(epoch_step)`` after :meth:`UnpairedOrder.start_epoch`."""

    def __init__(self, domain_x: str | Path, domain_y: str | Path, size: int, batch_size: int, seed: int,
                 mirror: bool) -> None:
        self.x = ImageFolder(domain_x, size, "--domain-x folder")
        self.y = ImageFolder(domain_y, size, "--domain-y folder")
        self.order = UnpairedOrder(len(self.x), len(self.y), seed)
        self.batch_size, self.mirror = batch_size, mirror

    @property
    def steps_per_epoch(self) -> int:
        """Full batches in an epoch (a last partial batch is left out); at least one (repeating picks)."""
        return max(1, self.order.length // self.batch_size)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``step`` of the current epoch as two (B, 3, S, S) tensors."""
        first, picks = step * self.batch_size, self.order.picks  # fewer images than a batch: the picks repeat
        picks = [picks[(first + i) % len(picks)] for i in range(self.batch_size)]
        xs = [self._maybe_flip(self.x.image(ix), fx) for ix, _, fx, _ in picks]
        ys = [self._maybe_flip(self.y.image(iy), fy) for _, iy, _, fy in picks]
        return torch.stack(xs), torch.stack(ys)

    def _maybe_flip(self, image: torch.Tensor, coin: bool) -> torch.Tensor:
        return image.flip(-1) if self.mirror and coin else image
