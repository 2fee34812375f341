"""Stale runs end to end (Table 2 at one step per row on a copy of the synthetic scenes): reused when nothing
changed; after a change to a training source file or to the data content, named as stale, flagged in the
report (not retrained, not silently current), and retrained with ``retrain_stale=True``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from p2p_eval.ablation import provenance, run_ablation

pytestmark = pytest.mark.slow


class Trainer:
    """Counts calls of the real trainer (or refuses to train when ``allowed`` is False)."""

    def __init__(self) -> None:
        from p2p_eval.train.trainer import train

        self.real, self.calls, self.allowed = train, [], True

    def __call__(self, cfg, *args, **kwargs):
        if not self.allowed:
            raise AssertionError(f"trained {cfg.name}")
        self.calls.append(cfg.name)
        return self.real(cfg, *args, **kwargs)


@pytest.fixture()
def setup(synth_small: Path, ablation_segmenter: Path, narrow_step: dict[str, int], tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    data = tmp_path / "data"
    shutil.copytree(synth_small, data)
    trainer = Trainer()
    monkeypatch.setattr("p2p_eval.ablation.runner.train", trainer)

    def ablate(name: str, **kwargs) -> dict:
        out = run_ablation("2", data, ablation_segmenter, tmp_path / name, preset="smoke", runs_dir=tmp_path / "runs",
                           device="cpu", overrides=narrow_step, progress=False, **kwargs)
        return json.loads((out / "report.json").read_text()) | {"md": (out / "table2.md").read_text()}

    first = ablate("first")
    assert len(trainer.calls) == 4 and not any(r["stale"] for r in first["tables"][0]["rows"])
    # progress=False (what `ablate --quiet` passes): no bar while training, translating, scoring, histogramming
    assert capsys.readouterr().err == ""
    return data, tmp_path, trainer, ablate, first


def _scores(report: dict) -> list:
    return [r["ours"] for r in report["tables"][0]["rows"]]


def test_code_change_flags_then_retrains(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    data, work, trainer, ablate, first = setup
    trainer.allowed = False
    same = ablate("same")  # nothing changed: reused, nothing trained, same scores
    assert _scores(same) == _scores(first) and "STALE" not in capsys.readouterr().out

    # a change to a training source: the digest is taken over a copy of the package with one file edited
    package = tmp_path / "pkg"
    shutil.copytree(provenance.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(package / "train" / "loop.py", "a") as fh:
        fh.write("\n# a change to the training loop\n")
    monkeypatch.setattr(provenance, "PACKAGE_DIR", package)
    flagged = ablate("flagged")
    printed = capsys.readouterr().out
    assert printed.count("ablation: STALE") == 4 and "train/loop.py" in printed and "--retrain-stale" in printed
    rows = flagged["tables"][0]["rows"]
    assert all(r["code_digest"] != flagged["meta"]["code_digest"] and "train/loop.py" in r["stale"][0] for r in rows)
    assert _scores(flagged) == _scores(first)  # reported as made, flagged, not retrained
    assert flagged["md"].count("\u2020 |") >= 4 and "\u2020 made by other code than this report's" in flagged["md"]

    trainer.allowed = True
    retrained = ablate("retrained", retrain_stale=True)
    assert sorted(trainer.calls[4:]) == sorted(r["generator"] for r in rows)
    assert len(list((work / "runs" / "stale").iterdir())) == 4  # the old runs are kept aside
    assert all(r["code_digest"] == retrained["meta"]["code_digest"] and not r["stale"]
               for r in retrained["tables"][0]["rows"])
    assert "\u2020" not in retrained["md"]


def test_data_change_flags_the_runs_and_the_ground_truth(setup, capsys: pytest.CaptureFixture) -> None:
    data, work, trainer, ablate, first = setup
    image = sorted((data / "train").iterdir())[0]
    image.write_bytes(sorted((data / "train").iterdir())[1].read_bytes())  # rewrite one training image
    trainer.allowed = False
    flagged = ablate("flagged")
    assert "data content changed" in capsys.readouterr().out
    assert flagged["meta"]["data"]["fingerprint"] != first["meta"]["data"]["fingerprint"]
    assert all(r["stale"] == ["data content changed since it was made"] for r in flagged["tables"][0]["rows"])
    assert "\u2021 trained on other data content" in flagged["md"] and "\u2020" not in flagged["md"]
    # the real photos' score is cached by data content: a new entry, not the old one reused
    assert len(list((work / "runs" / "ground_truth").glob("*.json"))) == 2
    trainer.allowed = True
    ablate("retrained", retrain_stale=True)
    assert len(trainer.calls) == 8


def test_an_explicit_precision_trains_its_own_runs(setup) -> None:
    """Precision reaches the training (the runs' log.jsonl) and is part of a run's identity: an fp32 request never
    reuses runs trained under ``auto`` (bf16 on a CPU with native bf16), and the report says what each row ran in."""
    import torch

    from p2p_eval.device import resolve_precision

    data, work, trainer, ablate, first = setup
    auto = resolve_precision("auto", torch.device("cpu"))
    first_rows = first["tables"][0]["rows"]
    assert first["meta"]["precision"] == {"asked": "auto", "used": [auto]}
    assert all(r["precision"] == auto for r in first_rows)
    other = "fp32" if auto == "bf16" else "bf16"
    asked = ablate("other", precision=other)
    rows = asked["tables"][0]["rows"]
    assert len(trainer.calls) == 8 and {r["run"] for r in rows}.isdisjoint(r["run"] for r in first_rows)
    for r in rows:
        lines = (work / "runs" / r["run"] / "log.jsonl").read_text().splitlines()
        assert {json.loads(line)["precision"] for line in lines} == {other} and r["precision"] == other
    assert asked["meta"]["precision"] == {"asked": other, "used": [other]}
    assert f"training precision {other} (asked {other})" in asked["md"]
    assert ("trained in bf16 on every row (paper: fp32)" in asked["meta"]["difference_list"]) == (other == "bf16")
    trainer.allowed = False
    ablate("again", precision=other)  # the same precision again: its runs are found, nothing trains
