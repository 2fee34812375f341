"""Presets: the paper's protocol (section 4, appendix 6.1-6.2), image budgets, the 286x286 size rule."""

from __future__ import annotations

import pytest

from p2p_eval.ablation.presets import PRESETS, get_preset, row_config
from p2p_eval.ablation.tables import GENERATORS_DIR
from p2p_eval.errors import UserError


def _cfg(name: str, preset: str, overrides: dict | None = None):
    return row_config(GENERATORS_DIR / f"{name}.toml", PRESETS[preset], overrides)


def test_paper_preset_is_the_papers_protocol() -> None:
    for name, batch in (("l1_cgan", 1), ("unet_l1_cgan_b10", 10), ("l1_cgan_d286", 1)):
        cfg, note = _cfg(name, "paper")
        assert (cfg.size, cfg.epochs, cfg.batch_size, cfg.lr_schedule) == (256, 200, batch, "constant")
        assert cfg.test_dropout and cfg.jitter and cfg.max_steps is None and cfg.resolved_num_downs == 8
        assert note == ""
    assert not _cfg("l1_cgan", "paper")[0].bottleneck_norm
    assert _cfg("l1_cgan", "paper", {"bottleneck_norm": True})[0].bottleneck_norm


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
    with pytest.raises(UserError, match="paper, quick, smoke"):
        get_preset("fast")
