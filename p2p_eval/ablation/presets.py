"""Presets of the ablation: how long and how large each row is trained.

- ``paper``: the paper's protocol (Isola et al. 2017, section 4 and appendix 6.1-6.2): 256x256, 200 epochs,
  each variant's own batch size (1; 10 in Table 2), test-time dropout with batch statistics, and the Torch
  code's constant learning rate. ``bottleneck_norm`` (the paper's BN in the bottleneck, errata 6.3) is an
  override any preset takes.
- ``quick``: real data (e.g. Cityscapes) at 64x64, each row sees :attr:`Preset.images_per_row` training
  images (1200: 1200 steps at batch 1, 120 at batch 10), hours for Tables 1-3 and 6 on a 2-core
  CPU (reports/quick/report.json, meta.total_seconds) and minutes on a GPU.
- ``smoke``: synthetic data at 32x32, 120 images per row; all three tables, translation and scoring
  included, take a few minutes on a 2-core CPU. Its reports are pipeline checks (:attr:`Preset.pipeline_check`):
  they carry a banner saying so and leave out the paper's numbers.

The budget becomes ``max_steps = ceil(images_per_row / batch_size)`` (with ``epochs`` 200, the budget is what
stops a run); an ``epochs`` or ``max_steps`` override drops the budget, so ``--epochs N`` trains N full epochs.
A discriminator that cannot see an image of the preset's size (the 286x286 ImageGAN needs >= 96 px: five
stride-2 convolutions and two 4x4 valid-ish convolutions) trains at the smallest larger size that keeps the
preset's U-Net depth; the report says so for that row.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from p2p_eval.config import TrainConfig, load_generator, min_side
from p2p_eval.errors import unknown_name


@dataclass(frozen=True)
class Preset:
    """Overrides of every row's generator file, an optional budget of training images per row, a note, and whether
    its reports are pipeline checks (runs too short to compare with any published number)."""

    name: str
    overrides: dict[str, Any]
    images_per_row: int | None
    description: str
    pipeline_check: bool = False


PRESETS = MappingProxyType({
    "paper": Preset("paper", {"size": 256, "epochs": 200, "lr_schedule": "constant", "test_dropout": True,
                              "jitter": True}, None,
                    "the paper's protocol: 256x256, 200 epochs, the variants' batch sizes (1; Table 2: 10), "
                    "jitter 286->256 + mirror, constant learning rate (Torch code), test-time dropout + batch stats"),
    "quick": Preset("quick", {"size": 64, "epochs": 200, "lr_schedule": "constant", "test_dropout": True}, 1200,
                    "real data at 64x64, 1200 training images per row (1200 steps at batch 1, 120 at batch 10), "
                    "otherwise the paper's settings"),
    "smoke": Preset("smoke", {"size": 32, "epochs": 200, "lr_schedule": "constant", "test_dropout": True}, 120,
                    "synthetic data at 32x32, 120 training images per row: a pipeline check, not a result",
                    pipeline_check=True),
})


def get_preset(name: str) -> Preset:
    """The preset called ``name``; unknown names raise a UserError listing the valid ones."""
    if name not in PRESETS:
        raise unknown_name("preset", name, list(PRESETS))
    return PRESETS[name]


def row_config(generator_file: Path, preset: Preset, overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, str]:
    """The resolved config of one row under ``preset`` and user ``overrides``, and a note ("" when none).

    Order: the generator file, then the preset's overrides, then the user's (None values ignored).
    """
    user = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged = {**preset.overrides, **user}
    budget = preset.images_per_row if not ({"epochs", "max_steps"} & set(user)) else None
    size = merged.get("size")
    probe = load_generator(generator_file, {k: v for k, v in merged.items() if k not in ("size", "num_downs")})
    need = min_side(probe)
    note = ""
    if size is not None and size < need and probe.arch != "resnet":
        depth = merged.get("num_downs") or int(math.log2(size))
        side = math.ceil(need / 2**depth) * 2**depth
        note = (f"trained and translated at {side}x{side} (not {size}x{size}): the "
                f"{probe.d_receptive_field}x{probe.d_receptive_field} discriminator needs images >= {need} px; "
                f"U-Net depth kept at {depth}")
        merged = {**merged, "size": side, "num_downs": depth}
    cfg = load_generator(generator_file, merged)
    if budget is not None:
        cfg = dataclasses.replace(cfg, max_steps=math.ceil(budget / cfg.batch_size))
    return cfg, note
