"""Report pieces: Kendall's tau against hand-counted pairs and scipy, orders, markdown/CSV structure, what a report
says it is (title, pipeline-check banner, step budget, notes beside scores)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from scipy.stats import kendalltau, permutation_test

import p2p_eval
from p2p_eval.ablation.presets import PRESETS
from p2p_eval.ablation.html import write_index
from p2p_eval.ablation.report import (CSV_COLUMNS, order, rank_comparison, report_path, table_csv, table_markdown,
                                      table_record)
from p2p_eval.ablation.tables import load_table


def test_kendall_tau_and_p_against_scipy_without_ties() -> None:
    paper = [0.42, 0.22, 0.57, 0.64, 0.66]  # Table 1 per-pixel
    assert rank_comparison(paper, paper)["tau"] == pytest.approx(1.0)
    assert rank_comparison([-v for v in paper], paper)["tau"] == pytest.approx(-1.0)
    for ours in ([0.1, 0.3, 0.2, 0.5, 0.4], [0.5, 0.1, 0.4, 0.3, 0.2], [0.9, 0.8, 0.1, 0.3, 0.2], [0.3, 0.1, 0.4, 0.2]):
        got = rank_comparison(ours, paper[:len(ours)])
        ref = kendalltau(ours, paper[:len(ours)])  # scipy: exact p-value when nothing is tied
        assert got["tau"] == pytest.approx(ref.statistic) and got["p_value"] == pytest.approx(ref.pvalue), ours
    assert rank_comparison([0.1, 0.3, 0.2, 0.5, 0.4], [1, 2, 3, 4, 5])["tau"] == pytest.approx(0.6)  # 8 vs 2 of 10 pairs


def test_kendall_tau_b_with_the_papers_ties() -> None:
    paper_iou = [0.10, 0.17, 0.17, 0.11]  # Table 3 IoU: 16x16 and 70x70 tie
    ours = [1.0, 2.0, 3.0, 4.0]
    got = rank_comparison(ours, paper_iou)
    # 3 concordant, 2 discordant, 1 pair tied in the paper: (3 - 2) / sqrt(6 * 5)
    assert got["tau"] == pytest.approx(1 / math.sqrt(30))
    assert got["tau"] == pytest.approx(kendalltau(ours, paper_iou).statistic)
    # with ties scipy's kendalltau p is asymptotic; the exact permutation p is scipy's permutation_test
    ref = permutation_test((ours,), lambda x: kendalltau(x, paper_iou).statistic, permutation_type="pairings",
                           alternative="two-sided")
    assert got["p_value"] == pytest.approx(ref.pvalue)
    ties_both = [0.5, 0.5, 0.2, 0.9, 0.1]
    paper1 = [0.42, 0.22, 0.57, 0.64, 0.64]
    assert rank_comparison(ties_both, paper1)["tau"] == pytest.approx(kendalltau(ties_both, paper1).statistic)


def test_kendall_undefined_cases() -> None:
    assert rank_comparison([0.5], [0.4])["tau"] is None
    assert rank_comparison([0.5, None], [0.4, 0.3])["tau"] is None
    assert rank_comparison([0.5, 0.5, 0.5], [0.1, 0.2, 0.3])["tau"] is None


def test_order_joins_ties() -> None:
    assert order(["a", "b", "c"], [0.1, 0.3, 0.1]) == "b > a = c"


def _result(p: float, c: float, i: float) -> dict:
    return {"pixel_accuracy": p, "class_accuracy": c, "class_iou": i, "images": 8,
            "ci95": {"pixel_accuracy": [p - .01, p + .01], "class_accuracy": [c - .01, c + .01],
                     "class_iou": [i - .01, i + .01]}}


def _meta(pipeline_check: bool = False) -> dict:
    preset = PRESETS["smoke"]
    return {"name": "t", "preset": {"name": preset.name, "description": preset.description,
                                    "overrides": preset.overrides, "images_per_row": 40},
            "pipeline_check": pipeline_check,
            "overrides": {}, "data": {"path": "D", "train": 16, "val": 8, "fingerprint": "da7a" * 16},
            "segmenter": {"sha256": "ab" * 32, "arch": "unet", "encoder": "resnet18", "input_size": 64},
            "segmenter_path": "seg.pt", "protocol": "p", "git": "abc123", "created": "now", "launcher": "local",
            "version": "0.1.0", "code_digest": "c0de" * 16,
            "devices": ["cpu"], "total_seconds": 3.0, "differences": "d"}


def _rows(spec, steps: int = 40, batch: int = 1) -> list[dict]:
    return [{"label": r.label, "generator": r.generator, "paper": r.paper, "result": _result(.1 * k, .05 * k, .02 * k),
             "run": f"runs/{r.generator}", "key": "k", "size": 32, "batch_size": batch, "steps": steps,
             "images_seen": steps * batch, "seconds": {"train": 5.0, "translate": 1.0, "score": 1.0}, "device": "cpu",
             "note": "", "commit": "abc123", "code_digest": "c0de" * 16, "data_fingerprint": "da7a" * 16, "stale": []}
            for k, r in enumerate(spec.rows, 1)]


def test_markdown_and_csv_structure() -> None:
    spec = load_table("1")
    rows = _rows(spec)
    rows[1] |= {"commit": "old999", "code_digest": "01d" * 21 + "0", "stale": ["code changed (train/loop.py)"]}
    rows[2] |= {"data_fingerprint": "0" * 64, "stale": ["data content changed"]}
    record = table_record(spec, rows, _result(.8, .3, .2))
    # our scores increase down the table; so does the paper's pixel accuracy except GAN < L1
    assert record["kendall"]["pixel"]["tau"] == pytest.approx(kendalltau([1, 2, 3, 4, 5], [.42, .22, .57, .64, .66]).statistic)
    md = table_markdown(record, _meta())
    assert "| L1+cGAN | 0.500 [0.490, 0.510]" in md
    assert "| Ground truth | 0.800 [0.790, 0.810] | 0.300 [0.290, 0.310] | 0.200 [0.190, 0.210] | 0.80 | 0.26 | 0.21 |" in md
    assert "Kendall tau-b" in md and "abc123" in md and "ab" * 32 in md
    # one spelling: IoU; every row has the paper's numbers, so "all rows, ours" would repeat our order: left out
    assert "| Class IoU [95% CI] |" in md and "IOU" not in md and "all rows, ours" not in md
    assert "Pipeline check" not in md and md.startswith("# Table 1: FCN-scores for different losses: ours on D, preset smoke;")
    # rows made by other code / other data are marked, with one footnote each; current rows are not
    assert "| GAN\u2020 |" in md and "| cGAN\u2021 |" in md and "| L1 |" in md and "| L1+cGAN |" in md
    assert md.count("\u2020 made by other code") == 1 and md.count("\u2021 trained on other data") == 1
    assert "c0dec0dec0de" in md and "da7ada7ada7a" in md and "old999" in md and "train/loop.py" in md
    lines = list(csv.DictReader(io.StringIO(table_csv(record, _meta()))))
    assert [ln["flags"] for ln in lines] == ["", "\u2020", "\u2021", "", "", ""]
    assert lines[1]["commit"] == "old999" and lines[0]["data_fingerprint"] == "da7a" * 16
    assert list(lines[0]) == CSV_COLUMNS
    assert [ln["label"] for ln in lines] == ["L1", "GAN", "cGAN", "L1+GAN", "L1+cGAN", "Ground truth"]
    assert [float(ln["paper_iou"]) for ln in lines] == [.11, .01, .16, .15, .17, .21]
    assert float(lines[-1]["pixel_lo"]) == pytest.approx(.79) and lines[-1]["generator"] == ""


def test_image_metric_table_against_hand_values() -> None:
    """The image-metric table of "Modified Pix2Pix": columns from the spec, lower-is-better orders, Kendall over the rows
    the source has numbers for, the optional LPIPS column left out when no row has it."""
    spec = load_table("modified")
    values = [(0.010, 20.0, 0.50), (0.020, 17.0, 0.40), (0.030, 15.0, 0.30), (0.015, 18.0, 0.45), (0.012, 19.0, 0.47)]
    rows = []
    for r, (mse, psnr, ssim) in zip(spec.rows, values):
        result = {"mse": mse, "psnr": psnr, "ssim": ssim, "lab_L": 0.9, "lab_a": 0.8, "lab_b": 0.7, "images": 4,
                  "ci95": {"mse": [mse - .001, mse + .001], "psnr": [psnr - 1, psnr + 1], "ssim": [ssim - .01, ssim + .01],
                           "lab_L": [None, None]}}
        rows.append({"label": r.label, "generator": r.generator, "paper": r.paper, "result": result, "run": "r",
                     "key": "k", "size": 32, "batch_size": 1, "steps": 1, "images_seen": 1, "direction": "BtoA",
                     "seconds": {"train": 1.0, "translate": 1.0, "score": 1.0}, "device": "cpu", "note": "",
                     "commit": "abc123", "code_digest": "c0de" * 16, "data_fingerprint": "da7a" * 16, "stale": []})
    record = table_record(spec, rows, None)
    assert [m["key"] for m in record["metrics"]] == ["mse", "psnr", "ssim", "lab_L", "lab_a", "lab_b"]
    # pix2pix beats Modified on every pixel metric here, as in the document: tau = +1 over its two rows
    for key in ("mse", "psnr", "ssim"):
        assert record["kendall"][key]["tau"] == pytest.approx(1.0) and record["kendall"][key]["n"] == 2
    assert record["kendall"]["mse"]["all_order"].startswith("pix2pix (L1+cGAN) > without rec")
    assert record["kendall"]["psnr"]["ours_order"] == "pix2pix (L1+cGAN) > Modified (L1+cGAN+rec)"
    meta = _meta() | {"segmenter": {}, "kinds": ["image"], "protocol": "image metrics"}
    md = table_markdown(record, meta)
    assert ("| Row | MSE [95% CI] | PSNR (dB) [95% CI] | SSIM [95% CI] | Lab hist. L | Lab hist. a | Lab hist. b | "
            "source MSE | source PSNR (dB) | source SSIM |") in md
    assert ("| pix2pix (L1+cGAN) | 0.0100 [0.0090, 0.0110] | 20.00 [19.00, 21.00] | 0.500 [0.490, 0.510] | 0.900 | "
            "0.800 | 0.700 | 0.0021 | 26.77 | 0.980 |") in md
    assert "| without L1 (cGAN+rec) | 0.0300 [0.0290, 0.0310] | 15.00 [14.00, 16.00] | 0.300 [0.290, 0.310] | 0.900 | " \
           "0.800 | 0.700 | n/a | n/a | n/a |" in md
    assert "Ground truth" not in md and "segmenter:" not in md and "\"Modified Pix2Pix\", Table 1" in md
    # three rows have no source numbers: "all rows, ours" ranks them too, so it is shown
    assert "| Kendall tau-b | p | all rows, ours |" in md
    lines = list(csv.DictReader(io.StringIO(table_csv(record, meta))))
    assert len(lines) == 5 and float(lines[1]["psnr_hi"]) == 18.0 and lines[2]["paper_psnr"] == ""
    assert "paper_lab_L" in lines[0] and "pixel" not in lines[0]


def test_report_paths_are_never_absolute(tmp_path: Path) -> None:
    package = Path(p2p_eval.__file__).resolve().parent
    shipped = package / "segmentation" / "weights" / "cityscapes256.safetensors"
    assert report_path(shipped, tmp_path) == "p2p_eval/segmentation/weights/cityscapes256.safetensors"
    if (package.parent / "pyproject.toml").is_file():  # a checkout: the repository's own folders by their path
        assert report_path(package.parent / "reports" / "smoke", tmp_path / "r") == "reports/smoke"
    report = tmp_path / "report"
    assert report_path(report / "sub" / "x.png", report) == "sub/x.png"
    assert report_path(tmp_path / "runs" / "l1-0123456789ab", report) == "l1-0123456789ab"
    assert report_path(str(tmp_path / "data" / "synth"), report) == "synth"


def test_pipeline_check_report_says_what_it_is(tmp_path: Path) -> None:
    """A smoke report: its title names the data and the preset, a banner says it is a pipeline check, the paper's
    numbers and the comparison with them are left out (the CSV keeps them), the header gives the steps the rows
    ran, and a row's note stands beside its scores."""
    spec = load_table("3")
    rows = _rows(spec, steps=12, batch=10)
    rows[3] |= {"size": 96, "note": "trained and translated at 96x96 (not 32x32)"}
    record = table_record(spec, rows, _result(.8, .3, .2))
    meta = _meta(pipeline_check=True) | {"data": _meta()["data"] | {"name": "synthetic street scenes"}}
    md = table_markdown(record, meta)
    title = md.splitlines()[0]
    assert title == ("# Table 3: FCN-scores for different receptive field sizes of the discriminator: ours on synthetic "
                     "street scenes, preset smoke (pipeline check); the paper's on Cityscapes labels -> photos, "
                     "256x256, 200 epochs")
    assert "> **Pipeline check, not a result: preset smoke" in md
    assert "Training per row: 12 steps at batch 10 (120 images seen)." in md
    assert "the runs stop at a budget of 40 training images per row (max_steps = ceil(40 / batch size))" in md
    assert "- data: synthetic street scenes (`D`, 16 train / 8 val pairs)" in md
    # no paper column and no number of the paper's (Table 3: .39 .15 .10 / ... / .42 .16 .11; ground truth .80 ...)
    assert "paper per-pixel" not in md and "Kendall" not in md and "paper's order" not in md
    assert not any(f"| {v} |" in md for v in ("0.39", "0.42", "0.80", "0.21"))
    score_lines = [ln for ln in md.splitlines() if ln.startswith("| 286x286 |")]
    assert score_lines[0].endswith("| 0.400 [0.390, 0.410] | 0.200 [0.190, 0.210] | 0.080 [0.070, 0.090] | "
                                   "trained and translated at 96x96 (not 32x32) |")
    assert md.count("| Note |") == 1 and "| Ground truth | 0.800 [0.790, 0.810] | 0.300 [0.290, 0.310] | " \
        "0.200 [0.190, 0.210] |  |" in md
    assert "| Per-pixel acc. | 286x286 > 70x70 > 16x16 > 1x1 |" in md  # our order, over all rows
    lines = list(csv.DictReader(io.StringIO(table_csv(record, meta))))
    assert [float(ln["paper_pixel"]) for ln in lines] == [.39, .65, .66, .42, .80]
    index = write_index(tmp_path, [record], meta, None).read_text()
    assert '<p class="banner">Pipeline check, not a result' in index and "paper per-pixel" not in index
    assert "<h1>Table 3 and Figure 7 on synthetic street scenes, preset smoke (t)</h1>" in index
    assert '<td class="order">trained and translated at 96x96 (not 32x32)</td>' in index
    assert 'class="paper"' not in index and "Kendall" not in index


def test_header_gives_each_group_of_rows_its_steps() -> None:
    spec = load_table("2")
    rows = _rows(spec, steps=1200, batch=1)
    rows[2] |= {"steps": 120, "batch_size": 10, "images_seen": 1200}
    rows[3] |= {"steps": None, "images_seen": None}
    md = table_markdown(table_record(spec, rows, None), _meta())
    assert ("Training per row: Encoder-decoder (L1), Encoder-decoder (L1+cGAN): 1200 steps at batch 1 (1200 images "
            "seen); U-net (L1): 120 steps at batch 10 (1200 images seen); U-net (L1+cGAN): no finished run.") in md
    assert "| paper per-pixel acc. |" in md and "| Note |" not in md


def test_non_square_segmenter_is_named_width_by_height(tmp_path: Path) -> None:
    """A segmenter trained with ``segmenter train --size 1024x512`` records input_hw = (512, 1024): the report
    prints its frame as 1024x512 (width x height); a square one's input_size as 256x256."""
    from p2p_eval.ablation.report import segmenter_frame

    assert segmenter_frame({"input_size": 256}) == "256x256"
    wide = {"sha256": "ab" * 32, "arch": "unet", "encoder": "resnet18", "input_size": 512, "input_hw": [512, 1024]}
    assert segmenter_frame(wide) == "1024x512" and segmenter_frame({}) == "unknown"
    spec = load_table("1")
    record = table_record(spec, _rows(spec), _result(.8, .3, .2))
    md = table_markdown(record, _meta() | {"segmenter": wide})
    assert "- segmenter: unet/resnet18 at 1024x512, sha256" in md and "512x512" not in md
    assert "at 1024x512" in write_index(tmp_path, [record], _meta() | {"segmenter": wide}, None).read_text()


def test_report_lists_the_differences_from_its_reference(tmp_path: Path) -> None:
    spec = load_table("1")
    record = table_record(spec, _rows(spec), _result(.8, .3, .2))
    items = ["images 32 px (public code 256x256)", "trained in bf16 on every row (public code: fp32)"]
    meta = _meta() | {"reference": "the public PyTorch code", "differences": "; ".join(items),
                      "difference_list": items, "precision": {"asked": "auto", "used": ["bf16"]}}
    md = table_markdown(record, meta)
    assert ("- differences from the public PyTorch code that remain:\n  - images 32 px (public code 256x256)\n"
            "  - trained in bf16 on every row (public code: fp32)\n") in md
    assert "(reproduces the public PyTorch code)" in md and "training precision bf16 (asked auto)" in md
    index = write_index(tmp_path, [record], meta, None).read_text()
    assert ("<li>differences from the public PyTorch code that remain:<ul><li>images 32 px (public code 256x256)</li>"
            "<li>trained in bf16 on every row (public code: fp32)</li></ul></li>") in index
    # a report.json written before the list and the reference existed: its joined string, from the paper
    old = table_markdown(record, _meta() | {"differences": "a; b"})
    assert "- differences from the paper that remain:\n  - a\n  - b\n" in old


def _run_row(generator: str, arch: str, size: int, bottleneck: bool, precision: str | None = "fp32",
             **settings) -> dict:
    return {"generator": generator, "size": size, "images_seen": None, "precision": precision,
            "settings": {"arch": arch, "norm": "batch", "epochs": 200, "lr_schedule": "constant", "dropout": "paper",
                         "bottleneck_norm": bottleneck, "jitter": True, "test_dropout": True} | settings}


def test_differences_from_the_paper_and_from_the_public_code() -> None:
    """The differences a report lists, against hand-written lists: settings that differ from the reference on some
    rows (the bottleneck norm counted on U-Net / encoder-decoder rows only), precision, size, segmenter, the
    preset's own differences."""
    from p2p_eval.ablation.pipeline import differences

    seg = {"arch": "unet", "encoder": "resnet18", "input_size": 512, "input_hw": [512, 1024]}
    segmenter = ("segmenter unet/resnet18 at 1024x512 trained by p2p-eval, labels resized nearest-neighbour (the "
                 "paper's and the public code's scripts/eval_cityscapes: Caffe FCN-8s at 2048x1024)")
    paper = PRESETS["paper"]
    rows = [_run_row("l1", "unet", 256, True), _run_row("resnet9_l1_cgan", "resnet", 256, False)]
    assert differences(rows, seg, paper, {}, 2975) == [segmenter, *paper.differences,
                                                        "one training run per row (the paper also reports single runs)"]
    rows = [_run_row("l1", "unet", 256, False), _run_row("l1_cgan", "unet", 256, True, precision="bf16"),
            _run_row("resnet9_l1_cgan", "resnet", 256, False)]
    assert differences(rows, None, paper, {"bottleneck_norm": False}, 2975)[:2] == [
        "batch norm on the bottleneck off on l1 (paper: on)", "trained in bf16 on l1_cgan (paper: fp32)"]
    public = PRESETS["public"]
    rows = [_run_row("l1", "unet", 64, False, lr_schedule="linear", dropout="public"),
            _run_row("l1_cgan", "unet", 64, False, lr_schedule="constant", dropout="public")]
    assert differences(rows, seg, public, {"size": 64, "max_steps": 5}, 400) == [
        "images 64 px (public code 256x256)", "at most 5 training steps per row (public code: 200 epochs)",
        "learning-rate schedule constant on l1_cgan (public code: linear)", segmenter, *public.differences]
    smoke = PRESETS["smoke"]
    rows = [_run_row("l1", "unet", 32, False, precision="bf16") | {"images_seen": 120},
            _run_row("encdec_l1", "encoder_decoder", 32, False, precision="bf16") | {"images_seen": 120}]
    assert differences(rows, None, smoke, {}, 16) == [
        "images 32 px (paper 256x256)", "120 training images per row (paper: 200 epochs = 3200 images here)",
        "batch norm on the bottleneck off on every row (paper: on)", "trained in bf16 on every row (paper: fp32)",
        *smoke.differences, "one training run per row (the paper also reports single runs)"]
