"""End to end on 64x64 synthetic scenes: all Cityscapes tables (1, 2, 3, 6) at the smoke preset with one step per row, the
report's files and structure, rerunning without training, refusing unfinished runs without resume."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2p_eval.ablation import provenance, run_ablation
from p2p_eval.ablation.presets import PRESETS
from p2p_eval.errors import UserError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ablation(synth_small: Path, ablation_segmenter: Path, narrow_step: dict[str, int],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """All tables at one step per row, the smoke preset narrowed to ``narrow_step``'s widths for this module (the
    CLI test below must find the same runs through ``--max-steps 1``); the folder is deleted after the module."""
    narrow = dataclasses.replace(PRESETS["smoke"], overrides={**PRESETS["smoke"].overrides, "ngf": narrow_step["ngf"],
                                                              "ndf": narrow_step["ndf"]})
    work = tmp_path_factory.mktemp("ablation")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("p2p_eval.ablation.pipeline.get_preset", lambda name: narrow if name == "smoke" else PRESETS[name])
        report = run_ablation("all", synth_small, ablation_segmenter, work / "report", preset="smoke",
                              runs_dir=work / "runs", device="cpu", overrides={"max_steps": 1}, progress=False)
        yield report, work / "runs"
    shutil.rmtree(work, ignore_errors=True)


def test_report_files_and_tables(ablation: tuple[Path, Path], synth_small: Path) -> None:
    report, runs = ablation
    for name in ("table1.md", "table1.csv", "table2.md", "table2.csv", "table3.md", "table3.csv", "figure7.png",
                 "figure7.json", "report.json", "index.html", "samples_table1.png", "samples_table2.png",
                 "samples_table3.png", "table6.md", "table6.csv", "samples_table6.png"):
        assert (report / name).is_file(), name
    # 15 distinct runs for 16 rows: the 70x70 L1+cGAN is shared by Tables 1 and 3; Table 6's 3 rows are photo -> labels
    assert len([p for p in runs.iterdir() if (p / "DONE").is_file()]) == 15
    lines = list(csv.DictReader((report / "table2.csv").open()))
    assert [ln["label"] for ln in lines] == ["Encoder-decoder (L1)", "Encoder-decoder (L1+cGAN)", "U-net (L1)",
                                             "U-net (L1+cGAN)", "Ground truth"]
    assert [float(ln["paper_pixel"]) for ln in lines] == [.35, .29, .48, .55, .80]
    for ln in lines:
        for m in ("pixel", "class", "iou"):
            assert 0 <= float(ln[m]) <= 1 and float(ln[f"{m}_lo"]) <= float(ln[m]) <= float(ln[f"{m}_hi"])
    assert {ln["batch_size"] for ln in lines[:4]} == {"10"} and {ln["steps"] for ln in lines[:4]} == {"1"}
    md = (report / "table3.md").read_text()
    # a smoke report is a pipeline check: it says so, names its data and preset, leaves the paper's numbers to the
    # CSV, gives the steps the rows ran, and shows the 286x286 row's note (trained at 96 px) beside its scores
    assert md.startswith(f"# Table 3: FCN-scores for different receptive field sizes of the discriminator: ours on "
                         f"{synth_small.name}, preset smoke (pipeline check);")
    assert "> **Pipeline check, not a result" in md and "paper per-pixel" not in md and "0.42 | 0.16 | 0.11 |" not in md
    assert "Training per row: 1 step at batch 1 (1 image seen)." in md
    assert "96x96" in next(ln for ln in md.splitlines() if ln.startswith("| 286x286 |")) and "Our order" in md
    lines3 = list(csv.DictReader((report / "table3.csv").open()))
    assert [(ln["paper_pixel"], ln["paper_class"], ln["paper_iou"]) for ln in lines3 if ln["label"] == "286x286"] == \
        [("0.42", "0.16", "0.11")]
    data = json.loads((report / "report.json").read_text())
    assert len(data["meta"]["segmenter"]["sha256"]) == 64 and data["meta"]["git"]
    # provenance: every row records what made it, and it is the report's own code and data
    meta = data["meta"]
    assert meta["code_digest"] == provenance.code_digest()["digest"]
    assert meta["data"]["fingerprint"] == provenance.data_fingerprint(synth_small)["fingerprint"]
    for table in data["tables"]:
        for row in table["rows"]:
            assert (row["code_digest"], row["data_fingerprint"], row["stale"]) == \
                (meta["code_digest"], meta["data"]["fingerprint"], [])
            assert json.loads((runs / row["run"] / "provenance.json").read_text())["git"] == meta["git"]
    assert "\u2020" not in md and meta["data"]["fingerprint"][:12] in md
    # what the report reproduces and how it differs: the paper, at 32 px, one step per row, no bottleneck norm
    assert meta["reference"] == "the paper" and meta["differences"] == "; ".join(meta["difference_list"])
    assert meta["difference_list"][:3] == ["images 32/96 px (paper 256x256)",
                                           "at most 1 training step per row (paper: 200 epochs)",
                                           "batch norm on the bottleneck off on every row (paper: on)"]
    assert "- differences from the paper that remain:\n  - images 32/96 px (paper 256x256)\n" in md
    assert meta["precision"]["asked"] == "auto" and all(
        r["precision"] in meta["precision"]["used"] for table in data["tables"] for r in table["rows"])
    assert all(data["tables"][i]["kendall"]["pixel"]["n"] == n for i, n in enumerate((5, 4, 4, 3)))
    assert [t["kind"] for t in data["tables"]] == ["fcn", "fcn", "fcn", "labels"]
    # data, segmenter and runs lie outside the repository and the report folder: named by their names alone
    assert meta["data"]["path"] == synth_small.name and meta["segmenter_path"] == "seg.pt"
    assert meta["segmenter"]["path"] == "seg.pt" and meta["segmenter"]["trained_on"]["data"] == synth_small.name
    assert {row["run"] for table in data["tables"] for row in table["rows"]} == \
        {p.name for p in runs.iterdir() if (p / "DONE").is_file()}
    for name in ("table1.md", "table1.csv", "table6.md", "report.json", "index.html"):
        text = (report / name).read_text()
        assert str(synth_small.parent) not in text and str(runs) not in text, name
    assert set(data["figure7"]["intersection"]) == {"L1", "cGAN", "L1+cGAN", "PixelGAN (1x1)"}
    fig = json.loads((report / "figure7.json").read_text())
    assert all(0 <= v <= 1 for s in fig["intersection"].values() for v in s.values())


def test_index_html_opens_from_disk(ablation: tuple[Path, Path]) -> None:
    report, _ = ablation
    html = (report / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert links and all(not link.startswith(("http", "/")) for link in links)
    assert all((report / link).is_file() for link in links), links
    for title in ("Table 1", "Table 2", "Table 3", "Table 6", "Figure 7"):
        assert title in html


def test_rerun_trains_nothing(ablation: tuple[Path, Path], synth_small: Path, ablation_segmenter: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    report, runs = ablation
    ckpts = {p: p.stat().st_mtime_ns for p in runs.glob("*/checkpoints/last.pt")}

    def no_training(*args, **kwargs):
        raise AssertionError("the rerun trained a row")

    monkeypatch.setattr("p2p_eval.ablation.runner.train", no_training)
    monkeypatch.setattr("p2p_eval.ablation.runner.translate_run", no_training)
    run_ablation("all", synth_small, ablation_segmenter, report, preset="smoke", runs_dir=runs, device="cpu",
                 overrides={"max_steps": 1}, progress=False)
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/checkpoints/last.pt")} == ckpts


def test_unfinished_run_needs_resume(ablation: tuple[Path, Path], synth_small: Path, ablation_segmenter: Path,
                                     tmp_path: Path) -> None:
    _, runs = ablation
    done = next(p for p in runs.iterdir() if p.name.startswith("l1-"))
    (done / "DONE").rename(done / "DONE.bak")
    try:
        with pytest.raises(UserError, match="--resume"):
            run_ablation("1", synth_small, ablation_segmenter, tmp_path / "r", preset="smoke", runs_dir=runs, device="cpu",
                         overrides={"max_steps": 1}, resume=False, progress=False)
    finally:
        (done / "DONE.bak").rename(done / "DONE")


def test_cli_reuses_the_runs(ablation: tuple[Path, Path], synth_small: Path, ablation_segmenter: Path,
                             tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from p2p_eval.cli import main

    _, runs = ablation
    out = tmp_path / "cli_report"
    code = main(["ablate", "--table", "2", "--data", str(synth_small), "--segmenter", str(ablation_segmenter),
                 "--out", str(out), "--preset", "smoke", "--max-steps", "1", "--runs-dir", str(runs), "--device", "cpu",
                 "--quiet", "--report-name", "cli test"])
    assert code == 0
    captured = capsys.readouterr()
    assert "4 distinct runs (4 done, 0 partial, 0 new, 0 stale)" in captured.out
    assert captured.err == ""  # --quiet: no progress bar at all (colour histograms included)
    assert sorted(p.name for p in out.glob("table*")) == ["table2.csv", "table2.md"]
    assert "(cli test)" in (out / "index.html").read_text()


def test_rescore_with_a_new_segmenter_trains_nothing(ablation: tuple[Path, Path], synth_small: Path,
                                                     ablation_segmenter: Path, second_segmenter: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    import p2p_eval.translate
    from p2p_eval.fsutil import file_sha256

    report, runs = ablation
    old = json.loads((report / "report.json").read_text())["tables"][1]
    ckpts = {p: p.stat().st_mtime_ns for p in runs.glob("*/checkpoints/*.pt")}
    unfinished = next(p for p in runs.iterdir() if p.name.startswith("encdec_l1-"))
    retranslate = next(p for p in runs.iterdir() if p.name.startswith("unet_l1_b10-"))
    shutil.rmtree(retranslate / "translated")
    (unfinished / "DONE").rename(unfinished / "DONE.bak")

    def no_training(*args, **kwargs):
        raise AssertionError("--rescore trained a row")

    translated: list[str] = []
    real_translate = p2p_eval.translate.translate_run

    def counting_translate(run, *args, **kwargs):
        translated.append(Path(run).name)
        return real_translate(run, *args, **kwargs)

    monkeypatch.setattr("p2p_eval.ablation.runner.train", no_training)
    monkeypatch.setattr("p2p_eval.ablation.runner.translate_run", counting_translate)
    try:
        out = run_ablation("2", synth_small, second_segmenter, tmp_path / "rescored", preset="smoke", runs_dir=runs,
                           device="cpu", overrides={"max_steps": 1}, rescore=True, progress=False)
    finally:
        (unfinished / "DONE.bak").rename(unfinished / "DONE")
    printed = capsys.readouterr().out
    assert f"--rescore skips {unfinished}" in printed
    assert translated == [retranslate.name]
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/checkpoints/*.pt")} == ckpts
    new_sha = file_sha256(second_segmenter)[:12]
    assert new_sha != file_sha256(ablation_segmenter)[:12]
    assert sorted(p.parent.parent.name for p in runs.glob(f"*/metrics/fcn_{new_sha}.json")) == sorted(
        p.name for p in runs.iterdir() if p.name.startswith(("encdec_l1_cgan-", "unet_l1")))
    new = json.loads((out / "report.json").read_text())["tables"][0]
    assert new["rows"][0]["ours"]["pixel"] is None and "skipped by --rescore" in new["rows"][0]["note"]
    changed = [(a["ours"], b["ours"]) for a, b in zip(old["rows"][1:], new["rows"][1:])]
    assert all(b["pixel"] is not None for _, b in changed) and any(a != b for a, b in changed)
    assert json.loads((out / "report.json").read_text())["meta"]["segmenter"]["sha256"][:12] == new_sha


def test_ground_truth_size_is_the_rows_common_resolution() -> None:
    from p2p_eval.ablation.pipeline import ground_truth_size

    assert ground_truth_size([64, 64, 64, 128]) == 64  # Table 3 quick: the 286x286 D row trains at 128
    assert ground_truth_size([256]) == 256
    assert ground_truth_size([128, 64]) == 64  # a tie goes to the smaller side


def test_cli_paper_preset_trains_the_papers_network_in_fp32(synth_small: Path, ablation_segmenter: Path,
                                                             narrow_step: dict[str, int], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    """``ablate --preset paper`` at 32 px, one step per row (Table 2: encoder-decoder and U-Net rows): every run's
    config has the batch-norm bottleneck, its log says fp32, and the report lists what still differs from the
    paper, with the jitter's bicubic resize among them."""
    from p2p_eval.cli import main

    narrow = dataclasses.replace(PRESETS["paper"], overrides={**PRESETS["paper"].overrides, "ngf": narrow_step["ngf"],
                                                              "ndf": narrow_step["ndf"]})
    monkeypatch.setattr("p2p_eval.ablation.pipeline.get_preset", lambda name: narrow if name == "paper" else PRESETS[name])
    out, runs = tmp_path / "paper", tmp_path / "runs"
    code = main(["ablate", "--table", "2", "--data", str(synth_small), "--segmenter", str(ablation_segmenter),
                 "--out", str(out), "--preset", "paper", "--size", "32", "--max-steps", "1", "--runs-dir", str(runs),
                 "--device", "cpu", "--quiet"])
    assert code == 0 and "preset paper (precision fp32)" in capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    rows = data["tables"][0]["rows"]
    assert [r["generator"] for r in rows] == ["encdec_l1", "encdec_l1_cgan", "unet_l1_b10", "unet_l1_cgan_b10"]
    for r in rows:
        assert "bottleneck_norm = true" in (runs / r["run"] / "config.toml").read_text()
        assert {json.loads(line)["precision"] for line in (runs / r["run"] / "log.jsonl").read_text().splitlines()} \
            == {"fp32"}
    meta = data["meta"]
    assert meta["precision"] == {"asked": "fp32", "used": ["fp32"]} and meta["reference"] == "the paper"
    assert meta["difference_list"][:2] == ["images 32 px (paper 256x256)",
                                           "at most 1 training step per row (paper: 200 epochs)"]
    assert not any("bottleneck" in d or "trained in" in d for d in meta["difference_list"])
    assert any(d.startswith("the jitter's resize 256 -> 286 is bicubic") for d in meta["difference_list"])
    md = (out / "table2.md").read_text()
    assert "(reproduces the paper)" in md and "training precision fp32 (asked fp32)" in md
