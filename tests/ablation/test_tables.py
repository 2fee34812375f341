"""Table specs against the paper (Isola et al. 2017, Tables 1-3, transcribed by hand from the paper text)."""

from __future__ import annotations

import pytest

from p2p_eval.ablation.presets import PRESETS, row_config
from p2p_eval.ablation.runner import run_key
from p2p_eval.ablation.tables import TABLES, load_table, parse_tables
from p2p_eval.config import load_generator
from p2p_eval.errors import UserError

# (label, pixel, class, IoU) as printed in the paper.
PAPER = {
    "1": [("L1", .42, .15, .11), ("GAN", .22, .05, .01), ("cGAN", .57, .22, .16), ("L1+GAN", .64, .20, .15),
          ("L1+cGAN", .66, .23, .17)],
    "2": [("Encoder-decoder (L1)", .35, .12, .08), ("Encoder-decoder (L1+cGAN)", .29, .09, .05),
          ("U-net (L1)", .48, .18, .13), ("U-net (L1+cGAN)", .55, .20, .14)],
    "3": [("1x1", .39, .15, .10), ("16x16", .65, .21, .17), ("70x70", .66, .23, .17), ("286x286", .42, .16, .11)],
}


@pytest.mark.parametrize("table", ["1", "2", "3"])
def test_paper_numbers(table: str) -> None:
    spec = load_table(table)
    got = [(r.label, r.paper["pixel"], r.paper["class"], r.paper["iou"]) for r in spec.rows]
    assert got == PAPER[table]
    assert spec.ground_truth_paper == {"pixel": .80, "class": .26, "iou": .21}


def _cfgs(table: str) -> list:
    return [load_generator(r.generator_file) for r in load_table(table).rows]


def test_table1_rows_vary_only_the_objective() -> None:
    cfgs = _cfgs("1")
    assert [(c.gan, c.lambda_l1 > 0) for c in cfgs] == [("none", True), ("unconditional", False),
                                                        ("conditional", False), ("unconditional", True),
                                                        ("conditional", True)]
    assert {(c.arch, c.d_receptive_field, c.batch_size) for c in cfgs} == {("unet", 70, 1)}


def test_table2_rows_are_batch10_encdec_and_unet() -> None:
    cfgs = _cfgs("2")
    assert [(c.arch, c.gan) for c in cfgs] == [("encoder_decoder", "none"), ("encoder_decoder", "conditional"),
                                               ("unet", "none"), ("unet", "conditional")]
    assert {c.batch_size for c in cfgs} == {10}


def test_table3_rows_vary_only_the_receptive_field() -> None:
    cfgs = _cfgs("3")
    assert [c.d_receptive_field for c in cfgs] == [1, 16, 70, 286]
    assert {(c.arch, c.gan, c.lambda_l1, c.batch_size) for c in cfgs} == {("unet", "conditional", 100.0, 1)}


def test_70x70_run_is_shared_by_tables_1_and_3(tmp_path) -> None:
    keys = {}
    for t in ("1", "3"):
        for row in load_table(t).rows:
            cfg, _ = row_config(row.generator_file, PRESETS["smoke"])
            keys.setdefault(run_key(cfg, tmp_path), set()).add((t, row.label))
    assert {("1", "L1+cGAN"), ("3", "70x70")} in keys.values()
    assert len(keys) == 8  # 5 + 4 rows, one shared


def test_parse_tables_and_errors(tmp_path) -> None:
    assert parse_tables("all") == ["1", "2", "3"]
    assert parse_tables("3,1") == ["1", "3"]
    assert parse_tables(["2", "2"]) == ["2"]
    assert set(TABLES) == {"1", "2", "3"}
    with pytest.raises(UserError, match="valid: 1, 2, 3, all"):
        parse_tables("4")
    bad = tmp_path / "t.toml"
    bad.write_text('name = "t"\ntitle = "t"\n[[rows]]\nlabel = "x"\ngenerator = "nope"\n'
                   'paper = {pixel = 0.1, class = 0.1, iou = 0.1}\n[ground_truth]\npaper = {pixel = 1, class = 1, iou = 1}\n')
    with pytest.raises(UserError, match="no generator file"):
        load_table("x", bad)
    bad.write_text('name = "t"\ntitle = "t"\n[[rows]]\nlabel = "x"\ngenerator = "l1"\npaper = {pixel = 2}\n'
                   '[ground_truth]\npaper = {pixel = 1, class = 1, iou = 1}\n')
    with pytest.raises(UserError, match="paper must be"):
        load_table("x", bad)
