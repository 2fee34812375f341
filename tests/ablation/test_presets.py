"""Presets: the paper's protocol (section 4, appendix 6.1-6.3), the public PyTorch code's defaults, the
bottleneck-norm rule per row, precisions, image budgets, the 286x286 size rule."""

from __future__ import annotations

import pytest

from p2p_eval.ablation.presets import PRESETS, get_preset, row_config
from p2p_eval.ablation.tables import GENERATORS_DIR, load_table
from p2p_eval.errors import UserError
from p2p_eval.train.loop import lr_factor


def _cfg(name: str, preset: str, overrides: dict | None = None):
    return row_config(GENERATORS_DIR / f"{name}.toml", PRESETS[preset], overrides)


def test_paper_preset_is_the_papers_protocol() -> None:
    for name, batch in (("l1_cgan", 1), ("unet_l1_cgan_b10", 10), ("l1_cgan_d286", 1)):
        cfg, note = _cfg(name, "paper")
        assert (cfg.size, cfg.epochs, cfg.batch_size, cfg.lr_schedule) == (256, 200, batch, "constant")
        assert cfg.test_dropout and cfg.jitter and cfg.max_steps is None and cfg.resolved_num_downs == 8
        assert (cfg.dropout, cfg.bottleneck_norm, note) == ("paper", True, "")
    assert [(PRESETS[p].precision, PRESETS[p].reference) for p in ("paper", "public", "quick", "smoke")] == [
        ("fp32", "the paper"), ("fp32", "the public PyTorch code"), ("auto", "the paper"), ("auto", "the paper")]


#: Every generator of the shipped tables: (arch, norm) as its file says, by hand from generators/*.toml.
ARCHS = {"l1": "unet", "gan": "unet", "cgan": "unet", "l1_gan": "unet", "l1_cgan": "unet", "encdec_l1": "encoder_decoder",
         "encdec_l1_cgan": "encoder_decoder", "unet_l1_b10": "unet", "unet_l1_cgan_b10": "unet", "l1_cgan_d1": "unet",
         "l1_cgan_d16": "unet", "l1_cgan_d286": "unet", "l1_photo2label": "unet", "cgan_photo2label": "unet",
         "l1_cgan_photo2label": "unet", "l1_cgan_rec": "unet", "cgan_rec": "unet", "l1_rec": "unet",
         "l1_cgan_lambda1": "unet", "resnet9_l1_cgan": "resnet", "blog_resnet9": "resnet"}


def test_bottleneck_norm_per_row_under_each_preset() -> None:
    generators = {row.generator for t in ("1", "2", "3", "6", "modified", "blog") for row in load_table(t).rows}
    assert generators == set(ARCHS)
    for name, arch in ARCHS.items():
        paper, public, quick = (_cfg(name, p)[0] for p in ("paper", "public", "quick"))
        assert (paper.arch, paper.norm) == (arch, "batch"), name
        # the paper's network: batch norm on every U-Net / encoder-decoder bottleneck; a ResNet has none to set
        assert paper.bottleneck_norm is (arch != "resnet"), name
        assert not public.bottleneck_norm and not quick.bottleneck_norm, name
        # the user's choice wins over the preset's, and is set only where it applies
        assert _cfg(name, "paper", {"bottleneck_norm": False})[0].bottleneck_norm is False, name
        assert _cfg(name, "quick", {"bottleneck_norm": True})[0].bottleneck_norm is (arch != "resnet"), name


def test_bottleneck_norm_is_left_alone_where_it_is_impossible(tmp_path) -> None:
    variant = tmp_path / "instance.toml"
    variant.write_text('# a U-Net with instance norm\nnorm = "instance"\n')
    for preset, user in (("paper", None), ("paper", {"bottleneck_norm": True}), ("smoke", {"bottleneck_norm": True})):
        cfg, _ = row_config(variant, PRESETS[preset], user)
        assert (cfg.norm, cfg.bottleneck_norm) == ("instance", False)


def test_public_preset_is_the_public_codes_defaults() -> None:
    for name, batch in (("l1_cgan", 1), ("unet_l1_b10", 10), ("encdec_l1", 10), ("resnet9_l1_cgan", 1)):
        cfg, note = _cfg(name, "public")
        assert (cfg.size, cfg.epochs, cfg.batch_size, cfg.max_steps, note) == (256, 200, batch, None, ""), name
        assert (cfg.lr_schedule, cfg.dropout, cfg.bottleneck_norm) == ("linear", "public", False), name
        assert cfg.jitter and cfg.test_dropout, name  # test.py without --eval: dropout and batch statistics
    # lr_policy linear with n_epochs = n_epochs_decay = 100: 1 - max(0, e + 1 - 100) / 101 after e epochs
    factor = lr_factor(_cfg("l1_cgan", "public")[0].lr_schedule, 200)
    assert [factor(e) for e in (0, 98, 99)] == [1.0, 1.0, 1.0]
    assert factor(100) == pytest.approx(100 / 101) and factor(199) == pytest.approx(1 / 101)
    assert _cfg("l1_cgan", "paper")[0].lr_schedule == "constant"


def test_image_budget_becomes_steps_by_batch_size() -> None:
    assert _cfg("l1", "quick")[0].max_steps == 1200
    assert _cfg("unet_l1_b10", "quick")[0].max_steps == 120
    assert _cfg("encdec_l1", "smoke")[0].max_steps == 12  # ceil(120 / 10)
    cfg, _ = _cfg("l1", "quick", {"epochs": 3})
    assert (cfg.epochs, cfg.max_steps) == (3, None)
    assert _cfg("l1", "smoke", {"max_steps": 7})[0].max_steps == 7


def test_286_discriminator_gets_the_smallest_size_it_accepts() -> None:
    # five stride-2 convs then two 4x4 stride-1 pad-1 convs: side/32 - 2 >= 1  ->  side >= 96
    cfg, note = _cfg("l1_cgan_d286", "smoke")
    assert (cfg.size, cfg.resolved_num_downs) == (96, 5) and "96x96" in note
    cfg, note = _cfg("l1_cgan_d286", "quick")
    assert (cfg.size, cfg.resolved_num_downs) == (128, 6) and "128x128" in note
    cfg, note = _cfg("l1_cgan_d1", "smoke")
    assert (cfg.size, note) == (32, "")


def test_unknown_preset() -> None:
    with pytest.raises(UserError, match="paper, public, quick, smoke"):
        get_preset("fast")
