"""Every shipped generator variant (p2p_eval/generators/*.toml) loads, is complete, and holds its paper row's
setting (contracts.md)."""

from __future__ import annotations

import tomllib
from dataclasses import fields

import pytest
import torch

from p2p_eval.config import GENERATORS_DIR, TrainConfig, load_generator
from p2p_eval.models import build_discriminator, build_generator


NAMES = ["l1", "gan", "cgan", "l1_gan", "l1_cgan", "encdec_l1", "encdec_l1_cgan", "unet_l1_b10", "unet_l1_cgan_b10",
         "l1_cgan_d1", "l1_cgan_d16", "l1_cgan_d286", "resnet9_l1_cgan", "l1_cgan_rec",
         "l1_photo2label", "cgan_photo2label", "l1_cgan_photo2label", "cgan_rec", "l1_rec", "l1_cgan_lambda1"]
# name -> (arch, gan, lambda_l1, lambda_rec, d_receptive_field, batch_size), from the paper's tables / seeds
EXPECTED = {
    "l1": ("unet", "none", 100, 0, 70, 1),
    "gan": ("unet", "unconditional", 0, 0, 70, 1),
    "cgan": ("unet", "conditional", 0, 0, 70, 1),
    "l1_gan": ("unet", "unconditional", 100, 0, 70, 1),
    "l1_cgan": ("unet", "conditional", 100, 0, 70, 1),
    "encdec_l1": ("encoder_decoder", "none", 100, 0, 70, 10),
    "encdec_l1_cgan": ("encoder_decoder", "conditional", 100, 0, 70, 10),
    "unet_l1_b10": ("unet", "none", 100, 0, 70, 10),
    "unet_l1_cgan_b10": ("unet", "conditional", 100, 0, 70, 10),
    "l1_cgan_d1": ("unet", "conditional", 100, 0, 1, 1),
    "l1_cgan_d16": ("unet", "conditional", 100, 0, 16, 1),
    "l1_cgan_d286": ("unet", "conditional", 100, 0, 286, 1),
    "resnet9_l1_cgan": ("resnet", "conditional", 100, 0, 70, 1),
    "l1_cgan_rec": ("unet", "conditional", 1, 10, 70, 1),
    # Table 6 (photo -> labels): Table 1's objectives, trained AtoB.
    "l1_photo2label": ("unet", "none", 100, 0, 70, 1),
    "cgan_photo2label": ("unet", "conditional", 0, 0, 70, 1),
    "l1_cgan_photo2label": ("unet", "conditional", 100, 0, 70, 1),
    # Source document 002's ablation of its objective (lambda_L1 = 1, lambda_rec = 10), one term removed each.
    "cgan_rec": ("unet", "conditional", 0, 10, 70, 1),
    "l1_rec": ("unet", "none", 1, 10, 70, 1),
    "l1_cgan_lambda1": ("unet", "conditional", 1, 0, 70, 1),
}
#: Variants trained photo -> label map (pix2pix Table 6); every other one is labels -> photo.
ATOB = {"l1_photo2label", "cgan_photo2label", "l1_cgan_photo2label"}


def test_exactly_the_contract_files() -> None:
    assert sorted(p.stem for p in GENERATORS_DIR.glob("*.toml")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_generator_file(name: str) -> None:
    path = GENERATORS_DIR / f"{name}.toml"
    text = path.read_text()
    assert text.startswith(("# Table ", "# Extension", "# Row "))  # which paper row it is
    raw = tomllib.loads(text)
    optional = {"num_downs", "max_steps"}
    assert set(raw) == {f.name for f in fields(TrainConfig)} - optional  # complete
    cfg = load_generator(path, {})
    assert cfg.name == name
    got = (cfg.arch, cfg.gan, cfg.lambda_l1, cfg.lambda_rec, cfg.d_receptive_field, cfg.batch_size)
    assert got == EXPECTED[name]
    # The paper's shared settings (appendix 6.2, Cityscapes): 200 epochs, Adam 2e-4 / 0.5, jitter, 256, depth 8.
    assert (cfg.epochs, cfg.lr, cfg.beta1, cfg.jitter, cfg.size, cfg.num_downs, cfg.gan_mode) == (
        200, 2e-4, 0.5, True, 256, 8, "vanilla")
    assert cfg.direction == ("AtoB" if name in ATOB else "BtoA") and cfg.norm == "batch" and cfg.dropout == "paper"
    with torch.device("meta"):
        assert (build_discriminator(cfg) is None) == (cfg.gan == "none")
    small = load_generator(path, {"size": 128 if name == "l1_cgan_d286" else 64, "batch_size": 2})
    assert small.num_downs == (7 if name == "l1_cgan_d286" else 6)
    build_generator(small)
