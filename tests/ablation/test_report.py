"""Report pieces: Kendall's tau against hand-counted pairs and scipy, orders, markdown/CSV structure."""

from __future__ import annotations

import csv
import io
import itertools
import math

import pytest
from scipy.stats import kendalltau

from p2p_eval.ablation.presets import PRESETS
from p2p_eval.ablation.report import CSV_COLUMNS, order, rank_comparison, table_csv, table_markdown, table_record
from p2p_eval.ablation.tables import load_table


def _tau_a_by_hand(x: list[float], y: list[float]) -> float:
    pairs = list(itertools.combinations(range(len(x)), 2))
    s = sum(math.copysign(1, (x[i] - x[j]) * (y[i] - y[j])) for i, j in pairs)
    return s / len(pairs)


def test_kendall_tau_known_orderings() -> None:
    paper = [0.42, 0.22, 0.57, 0.64, 0.66]  # Table 1 per-pixel
    assert rank_comparison(paper, paper)["tau"] == pytest.approx(1.0)
    assert rank_comparison([-v for v in paper], paper)["tau"] == pytest.approx(-1.0)
    ours = [0.1, 0.3, 0.2, 0.5, 0.4]
    ref = [1, 2, 3, 4, 5]
    got = rank_comparison(ours, ref)
    assert got["tau"] == pytest.approx(0.6)  # 8 concordant, 2 discordant of 10 pairs
    assert got["tau"] == pytest.approx(_tau_a_by_hand(ours, ref))
    assert got["p_value"] == pytest.approx(kendalltau(ours, ref).pvalue)


def test_kendall_tau_b_with_the_papers_ties() -> None:
    paper_iou = [0.10, 0.17, 0.17, 0.11]  # Table 3 IoU: 16x16 and 70x70 tie
    got = rank_comparison([1.0, 2.0, 3.0, 4.0], paper_iou)
    # 3 concordant, 2 discordant, 1 pair tied in the paper: (3 - 2) / sqrt(6 * 5)
    assert got["tau"] == pytest.approx(1 / math.sqrt(30))
    assert got["tau"] == pytest.approx(kendalltau([1, 2, 3, 4], paper_iou).statistic)


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


def _meta() -> dict:
    preset = PRESETS["smoke"]
    return {"name": "t", "preset": {"name": preset.name, "description": preset.description,
                                    "overrides": preset.overrides, "images_per_row": 40},
            "overrides": {}, "data": {"path": "D", "train": 16, "val": 8},
            "segmenter": {"sha256": "ab" * 32, "arch": "unet", "encoder": "resnet18", "input_size": 64},
            "segmenter_path": "seg.pt", "protocol": "p", "git": "abc123", "created": "now", "launcher": "local",
            "devices": ["cpu"], "total_seconds": 3.0, "differences": "d"}


def test_markdown_and_csv_structure() -> None:
    spec = load_table("1")
    rows = [{"label": r.label, "generator": r.generator, "paper": r.paper, "result": _result(.1 * k, .05 * k, .02 * k),
             "run": f"runs/{r.generator}", "key": "k", "size": 32, "batch_size": 1, "steps": 40, "images_seen": 40,
             "seconds": {"train": 5.0, "translate": 1.0, "score": 1.0}, "device": "cpu", "note": ""}
            for k, r in enumerate(spec.rows, 1)]
    record = table_record(spec, rows, _result(.8, .3, .2))
    # our scores increase down the table; so does the paper's pixel accuracy except GAN < L1
    assert record["kendall"]["pixel"]["tau"] == pytest.approx(kendalltau([1, 2, 3, 4, 5], [.42, .22, .57, .64, .66]).statistic)
    md = table_markdown(record, _meta())
    assert "| L1+cGAN | 0.500 [0.490, 0.510]" in md
    assert "| Ground truth | 0.800 [0.790, 0.810] | 0.300 [0.290, 0.310] | 0.200 [0.190, 0.210] | 0.80 | 0.26 | 0.21 |" in md
    assert "Kendall tau-b" in md and "abc123" in md and "ab" * 32 in md
    lines = list(csv.DictReader(io.StringIO(table_csv(record))))
    assert list(lines[0]) == CSV_COLUMNS
    assert [ln["label"] for ln in lines] == ["L1", "GAN", "cGAN", "L1+GAN", "L1+cGAN", "Ground truth"]
    assert [float(ln["paper_iou"]) for ln in lines] == [.11, .01, .16, .15, .17, .21]
    assert float(lines[-1]["pixel_lo"]) == pytest.approx(.79) and lines[-1]["generator"] == ""
