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
    "6": [("L1", .86, .42, .35), ("cGAN", .74, .28, .22), ("L1+cGAN", .83, .36, .29)],  # section 4.6
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


def test_an_explicit_precision_is_part_of_the_run_key(tmp_path) -> None:
    """``auto`` keeps the key of the config and data folder alone; fp32 and bf16 each get their own key, so
    neither reuses the other's run."""
    import hashlib

    from p2p_eval.config import config_hash

    cfg, _ = row_config(load_table("1").rows[0].generator_file, PRESETS["smoke"])
    plain = hashlib.sha256(f"{config_hash(cfg)}\n{tmp_path.resolve()}".encode()).hexdigest()[:12]
    keys = [run_key(cfg, tmp_path, p) for p in ("auto", "fp32", "bf16")]
    assert keys[0] == run_key(cfg, tmp_path) == plain and len(set(keys)) == 3


def test_parse_tables_and_errors(tmp_path) -> None:
    assert parse_tables("all") == ["1", "2", "3", "6"]  # the Cityscapes tables; Facades' runs on its own
    assert parse_tables("3,1") == ["1", "3"]
    assert parse_tables("modified,6,2") == ["2", "6", "modified"]
    assert parse_tables(["2", "2"]) == ["2"]
    assert set(TABLES) == {"1", "2", "3", "6", "modified", "blog"}
    with pytest.raises(UserError, match="valid: 1, 2, 3, 6, all, blog, modified"):
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


def test_table6_is_photo_to_labels_with_the_table1_objectives() -> None:
    spec = load_table("6")
    assert (spec.kind, spec.data, spec.ground_truth_paper) == ("labels", "cityscapes", {})
    got = [(r.label, r.paper["pixel"], r.paper["class"], r.paper["iou"]) for r in spec.rows]
    assert got == PAPER["6"]
    assert [m.key for m in spec.metrics] == ["pixel", "class", "iou", "far"] and not spec.metrics[-1].rank
    table1 = {r.label: load_generator(r.generator_file) for r in load_table("1").rows}
    for row, cfg in zip(spec.rows, _cfgs("6")):
        ref = table1[row.label]
        assert cfg.direction == "AtoB" and ref.direction == "BtoA"
        assert (cfg.gan, cfg.lambda_l1, cfg.lambda_rec, cfg.arch, cfg.d_receptive_field, cfg.batch_size) == \
            (ref.gan, ref.lambda_l1, ref.lambda_rec, ref.arch, ref.d_receptive_field, ref.batch_size)


def test_modified_table_is_document_002_on_facades() -> None:
    spec = load_table("modified")
    assert (spec.kind, spec.data, spec.ground_truth_label) == ("image", "facades", None)
    assert "another data set" in spec.paper_source
    by_key = {m.key: m for m in spec.metrics}
    assert [k for k in by_key] == ["mse", "psnr", "ssim", "lab_L", "lab_a", "lab_b", "lpips"]
    assert [k for k, m in by_key.items() if not m.higher_is_better] == ["mse", "lpips"] and by_key["lpips"].optional
    # "Modified Pix2Pix", Table 1: original vs modified (day -> night)
    assert spec.rows[0].paper == {"mse": 0.002144413411081063, "psnr": 26.766485, "ssim": 0.97995055}
    assert spec.rows[1].paper == {"mse": 0.0026935997096859295, "psnr": 25.862993, "ssim": 0.9762408}
    assert all(not r.paper for r in spec.rows[2:])
    objectives = [(c.gan, c.lambda_l1, c.lambda_rec) for c in _cfgs("modified")]
    assert objectives == [("conditional", 100.0, 0.0), ("conditional", 1.0, 10.0), ("conditional", 0.0, 10.0),
                          ("none", 1.0, 10.0), ("conditional", 1.0, 0.0)]
    assert {(c.direction, c.arch, c.d_receptive_field, c.batch_size) for c in _cfgs("modified")} == \
        {("BtoA", "unet", 70, 1)}


def test_spec_metric_errors(tmp_path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text('name = "t"\ntitle = "t"\nkind = "image"\ndata = "facades"\n[[metrics]]\nkey = "psnr"\n'
                   'label = "PSNR"\n[[rows]]\nlabel = "x"\ngenerator = "l1"\npaper = {ssim = 0.5}\n')
    with pytest.raises(UserError, match="only the ranked metrics"):
        load_table("x", bad)
    bad.write_text('name = "t"\ntitle = "t"\nkind = "nope"\n[[rows]]\nlabel = "x"\ngenerator = "l1"\npaper = {}\n')
    with pytest.raises(UserError, match="kind must be one of fcn, labels, image"):
        load_table("x", bad)
