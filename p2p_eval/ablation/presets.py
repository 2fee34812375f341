"""Presets of the ablation: which reference a report reproduces, and how long and how large each row is trained.

- ``paper``: how the paper's tables were made (Isola et al. 2017, "Image-to-Image Translation with Conditional
  Adversarial Networks", section 4 and appendix 6.1-6.3): 256x256, 200 epochs, each variant's own batch size
  (1; 10 in Table 2), jitter + mirror, test-time dropout with batch statistics, the Torch code's constant learning
  rate, fp32 training, and batch norm on the U-Net / encoder-decoder bottleneck (errata 6.3: the paper's tables
  were trained with it, which zeroes the bottleneck's activations at batch 1; the public code's fix is
  ``--no-bottleneck-norm``).
- ``public``: the defaults of the public PyTorch code (junyanz/pytorch-CycleGAN-and-pix2pix, ``train.py`` and
  ``test.py``): 256x256, 200 epochs with the learning rate decayed linearly over the last 100 (``lr_policy
  linear``), dropout on its decoder layers (``dropout = "public"``), no batch norm on the bottleneck, jitter +
  mirror (``resize_and_crop`` 286 -> 256, flip), fp32, and the net left in training mode at test time (its
  ``test.py`` calls ``model.eval()`` only with ``--eval``, default off: dropout and batch statistics on).
- ``quick``: real data (e.g. Cityscapes) at 64x64, each row sees :attr:`Preset.images_per_row` training
  images (1200: 1200 steps at batch 1, 120 at batch 10), hours for Tables 1-3 and 6 on a 2-core
  CPU (reports/quick/report.json, meta.total_seconds) and minutes on a GPU.
- ``smoke``: synthetic data at 32x32, 120 images per row; all three tables, translation and scoring
  included, take a few minutes on a 2-core CPU. Its reports are pipeline checks (:attr:`Preset.pipeline_check`):
  they carry a banner saying so and leave out the paper's numbers.

Each preset names its reference (:attr:`Preset.reference`) and the differences from it that remain whatever
the run (:attr:`Preset.differences`, e.g. the jitter's bicubic resize where the paper's Torch code used
bilinear). :data:`REFERENCE_SETTINGS` holds what each reference fixes; the report
(:func:`p2p_eval.ablation.pipeline.differences`) adds every row setting that differs from it (a user's
``--no-bottleneck-norm`` under ``paper``, the bottleneck without batch norm under ``quick``), the image size,
training length, precision and segmenter.

Precision (:attr:`Preset.precision`): ``paper`` and ``public`` train in fp32 (the references' precision);
``quick`` and ``smoke`` in ``auto`` (bf16 where it is native, :func:`p2p_eval.device.resolve_precision`).
``ablate --precision`` overrides it.

Bottleneck norm (:attr:`Preset.bottleneck_norm`, overridden by ``bottleneck_norm`` in the user's overrides):
True / False is set on every row whose generator can have it (norm = "batch", arch "unet" or
"encoder_decoder"); other rows (ResNet, other norms) keep their file's setting. None keeps every file's.

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

#: The two references a preset can reproduce.
PAPER, PUBLIC_CODE = "the paper", "the public PyTorch code"

#: Generator architectures with a bottleneck that ``bottleneck_norm`` applies to.
BOTTLENECK_ARCHS = ("unet", "encoder_decoder")

#: What each reference fixes that a preset or the user can change; the report names every row that differs
#: (``bottleneck_norm`` only on rows it applies to, see :func:`bottleneck_applies`).
REFERENCE_SETTINGS = MappingProxyType({
    PAPER: {"size": 256, "epochs": 200, "lr_schedule": "constant", "dropout": "paper", "bottleneck_norm": True,
            "jitter": True, "test_dropout": True, "precision": "fp32"},
    PUBLIC_CODE: {"size": 256, "epochs": 200, "lr_schedule": "linear", "dropout": "public", "bottleneck_norm": False,
                  "jitter": True, "test_dropout": True, "precision": "fp32"},
})

#: Differences from the paper's Torch code that remain in every run of a preset reproducing the paper.
_PAPER_DIFFERENCES = (
    "the jitter's resize 256 -> 286 is bicubic (as the public PyTorch code), where the paper's Torch code used "
    "bilinear",
    "other random numbers than the Torch code's (weights, crops, flips, dropout masks): a seed does not repeat the "
    "paper's runs",
)


@dataclass(frozen=True)
class Preset:
    """Overrides of every row's generator file, an optional budget of training images per row, a note, whether
    its reports are pipeline checks (runs too short to compare with any published number), the training
    precision, the bottleneck-norm rule (see the module doc), the reference it reproduces and the differences
    from that reference that remain in every run of it."""

    name: str
    overrides: dict[str, Any]
    images_per_row: int | None
    description: str
    pipeline_check: bool = False
    precision: str = "auto"
    bottleneck_norm: bool | None = None
    reference: str = PAPER
    differences: tuple[str, ...] = ()


PRESETS = MappingProxyType({
    "paper": Preset("paper", {"size": 256, "epochs": 200, "lr_schedule": "constant", "test_dropout": True,
                              "jitter": True}, None,
                    "the paper's protocol: 256x256, 200 epochs, the variants' batch sizes (1; Table 2: 10), "
                    "jitter 286->256 + mirror, constant learning rate (Torch code), test-time dropout + batch stats, "
                    "fp32, batch norm on the U-Net bottleneck (errata 6.3)",
                    precision="fp32", bottleneck_norm=True, differences=_PAPER_DIFFERENCES),
    "public": Preset("public", {"size": 256, "epochs": 200, "lr_schedule": "linear", "dropout": "public",
                                "test_dropout": True, "jitter": True}, None,
                     "the public PyTorch code's defaults: 256x256, 200 epochs (learning rate decayed linearly over the "
                     "last 100), dropout on its decoder layers, no batch norm on the bottleneck, jitter 286->256 + "
                     "mirror, test in training mode (dropout + batch stats), fp32",
                     precision="fp32", bottleneck_norm=False, reference=PUBLIC_CODE,
                     differences=("its test.py translates the first 50 val images (--num_test 50); every val image "
                                  "is translated and scored here",
                                  "other random numbers than the public code's (weights, crops, flips, dropout "
                                  "masks): a seed does not repeat its runs")),
    "quick": Preset("quick", {"size": 64, "epochs": 200, "lr_schedule": "constant", "test_dropout": True}, 1200,
                    "real data at 64x64, 1200 training images per row (1200 steps at batch 1, 120 at batch 10), "
                    "otherwise the paper's settings",
                    differences=_PAPER_DIFFERENCES),
    "smoke": Preset("smoke", {"size": 32, "epochs": 200, "lr_schedule": "constant", "test_dropout": True}, 120,
                    "synthetic data at 32x32, 120 training images per row: a pipeline check, not a result",
                    pipeline_check=True, differences=_PAPER_DIFFERENCES),
})


def get_preset(name: str) -> Preset:
    """The preset called ``name``; unknown names raise a UserError listing the valid ones."""
    if name not in PRESETS:
        raise unknown_name("preset", name, list(PRESETS))
    return PRESETS[name]


def bottleneck_applies(arch: str, norm: str) -> bool:
    """True when ``bottleneck_norm`` changes a generator of ``arch`` and ``norm``: a U-Net / encoder-decoder with
    batch norm (:func:`p2p_eval.config.load_generator` refuses it with another norm; a ResNet has no bottleneck)."""
    return norm == "batch" and arch in BOTTLENECK_ARCHS


def row_config(generator_file: Path, preset: Preset, overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, str]:
    """The resolved config of one row under ``preset`` and user ``overrides``, and a note ("" when none).

    Order: the generator file, then the preset's overrides, then the user's (None values ignored). The
    bottleneck norm (the user's ``bottleneck_norm``, else the preset's) is set only where it applies
    (:func:`bottleneck_applies`); other rows keep their file's.
    """
    user = {k: v for k, v in (overrides or {}).items() if v is not None}
    bottleneck = user.pop("bottleneck_norm", preset.bottleneck_norm)
    merged = {**preset.overrides, **user}
    budget = preset.images_per_row if not ({"epochs", "max_steps"} & set(user)) else None
    size = merged.get("size")
    probe = load_generator(generator_file, {k: v for k, v in merged.items() if k not in ("size", "num_downs")})
    if bottleneck is not None and bottleneck_applies(probe.arch, probe.norm):
        merged["bottleneck_norm"] = bottleneck
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
