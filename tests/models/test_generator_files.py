"""Every shipped generator variant (generators/*.toml) loads, names its document's row on its first line, sets only
what differs from the paper's L1+cGAN defaults, and resolves to its row's setting (the paper's tables, "Modified
Pix2Pix", the blog post "pix2pix Image Translation": its ResNet-9 generator, and its whole network)."""

from __future__ import annotations

import tomllib

import pytest
import torch

from p2p_eval.config import GENERATORS_DIR, load_generator
from p2p_eval.models import build_discriminator, build_generator


NAMES = ["l1", "gan", "cgan", "l1_gan", "l1_cgan", "encdec_l1", "encdec_l1_cgan", "unet_l1_b10", "unet_l1_cgan_b10",
         "l1_cgan_d1", "l1_cgan_d16", "l1_cgan_d286", "resnet9_l1_cgan", "l1_cgan_rec",
         "l1_photo2label", "cgan_photo2label", "l1_cgan_photo2label", "cgan_rec", "l1_rec", "l1_cgan_lambda1",
         "blog_resnet9", "colorization", "colorization_l2", "maps_map2photo", "maps_map2photo_l1", "maps_photo2map",
         "maps_photo2map_l1", "edges_shoes"]
# name -> (arch, gan, lambda_l1, lambda_rec, d_receptive_field, batch_size), from the paper's tables and "Modified Pix2Pix"
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
    # "Modified Pix2Pix"'s objective (lambda_L1 = 1, lambda_rec = 10) with one term removed each.
    "cgan_rec": ("unet", "conditional", 0, 10, 70, 1),
    "l1_rec": ("unet", "none", 1, 10, 70, 1),
    "l1_cgan_lambda1": ("unet", "conditional", 1, 0, 70, 1),
    # The blog post's network: ResNet-9, a one-output discriminator (no receptive field of its own), no L1 (its
    # Euclidean distance instead; see test_blog_network_file).
    "blog_resnet9": ("resnet", "conditional", 0, 0, 70, 1),
    # The paper's other tasks (appendix 6.2; Tables 4 and 5): L1+cGAN and their L1 / L2 baselines.
    "colorization": ("unet", "conditional", 100, 0, 70, 4),
    "colorization_l2": ("unet", "none", 0, 0, 70, 4),
    "maps_map2photo": ("unet", "conditional", 100, 0, 70, 1),
    "maps_map2photo_l1": ("unet", "none", 100, 0, 70, 1),
    "maps_photo2map": ("unet", "conditional", 100, 0, 70, 1),
    "maps_photo2map_l1": ("unet", "none", 100, 0, 70, 1),
    "edges_shoes": ("unet", "conditional", 100, 0, 70, 4),
}
#: The paper's training settings of its other tasks (appendix 6.2) and pix2pix's AB files (maps: photo in A, map
#: in B; edges2shoes: edges in A): name -> (direction, epochs, jitter, mirror, color space, in/out channels).
#: Maps: "trained for 200 epochs, batch size 1, with random jitter and mirroring"; BW -> color: "~6 epochs,
#: batch size 4, with only mirroring, no random jitter"; edges -> shoes: "15 epochs, batch size 4".
OTHER_TASKS = {
    "colorization": ("AtoB", 6, False, True, "lab", 1, 2),
    "colorization_l2": ("AtoB", 6, False, True, "lab", 1, 2),
    "maps_map2photo": ("BtoA", 200, True, None, "rgb", 3, 3),
    "maps_map2photo_l1": ("BtoA", 200, True, None, "rgb", 3, 3),
    "maps_photo2map": ("AtoB", 200, True, None, "rgb", 3, 3),
    "maps_photo2map_l1": ("AtoB", 200, True, None, "rgb", 3, 3),
    "edges_shoes": ("AtoB", 15, True, None, "rgb", 3, 3),
}
#: Variants trained photo -> label map (pix2pix Table 6); every other one is labels -> photo.
ATOB = {"l1_photo2label", "cgan_photo2label", "l1_cgan_photo2label"}


#: The paper's L1+cGAN setting (section 3, appendix 6.1-6.2; errata 6.3 for the bottleneck), written out here by
#: hand: what a variant file leaves out. A variant may repeat only its own name.
PAPER_L1_CGAN = {
    "name": "l1_cgan", "arch": "unet", "num_downs": None, "resnet_blocks": 9, "ngf": 64, "ndf": 64, "input_nc": 3,
    "output_nc": 3, "norm": "batch", "bottleneck_norm": False, "dropout": "paper", "gan": "conditional",
    "gan_mode": "vanilla", "lambda_l1": 100.0, "lambda_rec": 0.0, "lambda_l2": 0.0, "lambda_mse": 0.0, "d_arch": "patchgan",
    "d_receptive_field": 70, "d_input": "concat", "batch_size": 1,
    "epochs": 200, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "lr_schedule": "constant", "size": 256, "jitter": True,
    "mirror": None, "direction": "BtoA", "color_space": "rgb", "seed": 0, "test_dropout": True, "log_every": 50, "max_steps": None,
}


def test_exactly_the_contract_files() -> None:
    assert sorted(p.stem for p in GENERATORS_DIR.glob("*.toml")) == sorted(NAMES)


def test_the_hand_written_defaults_are_the_configs() -> None:
    assert load_generator(GENERATORS_DIR / "l1_cgan.toml").to_dict() == {**PAPER_L1_CGAN, "num_downs": 8}


@pytest.mark.parametrize("name", NAMES)
def test_a_variant_sets_only_what_differs(name: str) -> None:
    raw = tomllib.loads((GENERATORS_DIR / f"{name}.toml").read_text())
    assert set(raw) <= set(PAPER_L1_CGAN), sorted(set(raw) - set(PAPER_L1_CGAN))
    assert raw.get("name", name) == name
    same = sorted(key for key, value in raw.items() if key != "name" and value == PAPER_L1_CGAN[key])
    assert not same, f"{name}.toml repeats the default of {same}"
    # differences only: one line per setting after one comment naming the row
    lines = (GENERATORS_DIR / f"{name}.toml").read_text().splitlines()
    assert lines[0].startswith("#") and len(lines) == 1 + len(raw)


@pytest.mark.parametrize("name", NAMES)
def test_generator_file(name: str) -> None:
    path = GENERATORS_DIR / f"{name}.toml"
    text = path.read_text()
    assert text.startswith(("# Table ", "# Figure ", "# Extension", "# Row "))  # which paper row it is
    cfg = load_generator(path, {})
    assert cfg.name == name
    got = (cfg.arch, cfg.gan, cfg.lambda_l1, cfg.lambda_rec, cfg.d_receptive_field, cfg.batch_size)
    assert got == EXPECTED[name]
    # The paper's shared settings (appendix 6.2, Cityscapes): 200 epochs, Adam 2e-4 / 0.5, jitter, 256, depth 8.
    assert (cfg.lr, cfg.beta1, cfg.size, cfg.num_downs, cfg.gan_mode) == (2e-4, 0.5, 256, 8, "vanilla")
    task = (cfg.direction, cfg.epochs, cfg.jitter, cfg.mirror, cfg.color_space, cfg.input_nc, cfg.output_nc)
    assert task == OTHER_TASKS.get(name, ("AtoB" if name in ATOB else "BtoA", 200, True, None, "rgb", 3, 3))
    assert cfg.norm == "batch" and cfg.dropout == "paper"
    assert cfg.lambda_mse == (1.0 if name == "colorization_l2" else 0.0)
    with torch.device("meta"):
        assert (build_discriminator(cfg) is None) == (cfg.gan == "none")
    small = load_generator(path, {"size": 128 if name == "l1_cgan_d286" else 64, "batch_size": 2})
    assert small.num_downs == (7 if name == "l1_cgan_d286" else 6)
    build_generator(small)


def test_blog_network_file() -> None:
    # "pix2pix Image Translation": G = 3-layer encoder + 9 residual blocks + 3-layer decoder; D a five-layer CNN with
    # an output of size 1 that sees "the sum of X and Y"; loss = Euclidean distance between Y and Y' + classification.
    cfg = load_generator(GENERATORS_DIR / "blog_resnet9.toml", {"size": 64})
    assert (cfg.arch, cfg.resnet_blocks, cfg.d_arch, cfg.d_input, cfg.lambda_l1, cfg.lambda_l2, cfg.gan_mode) == (
        "resnet", 9, "global", "sum", 0.0, 1.0, "vanilla")
    assert "pix2pix Image Translation" in (GENERATORS_DIR / "blog_resnet9.toml").read_text().splitlines()[0]
    torch.manual_seed(0)
    d = build_discriminator(cfg)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert d(x + build_generator(cfg)(x)).shape == (2, 1)
