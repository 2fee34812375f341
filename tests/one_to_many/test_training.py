"""The one-to-many trainer: exact resume, the run folder, refusals; through the library and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from p2p_eval.cli import main
from p2p_eval.errors import UserError
from p2p_eval.one_to_many.config import VARIANTS_DIR, load_variant, variant_names
from p2p_eval.one_to_many.trainer import load_checkpoint, train


def _losses(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
            for line in (run / "log.jsonl").read_text().splitlines()]


def test_resume_reaches_the_same_weights_and_losses(folders: tuple[Path, Path], variant: Path, tmp_path: Path) -> None:
    """2 epochs of 3 steps: straight, and stopped at step 2 (inside epoch 1), 3 (its end) and 4, each resumed."""
    x, y = folders
    train(load_variant(variant), x, y, tmp_path / "straight", device="cpu", progress=False)
    for stop in (2, 3, 4):
        train(load_variant(variant, {"max_steps": stop}), x, y, tmp_path / "split", device="cpu", progress=False,
              resume=stop > 2)
    train(load_variant(variant), x, y, tmp_path / "split", device="cpu", progress=False, resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6 and a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "split")
    assert [r["step"] for r in _losses(tmp_path / "split")] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "split" / "DONE").exists()
    assert sorted(p.name for p in (tmp_path / "split" / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert "ngf = 4" in (tmp_path / "split" / "config.toml").read_text()


def test_a_run_is_not_overwritten_nor_resumed_with_another_config(folders: tuple[Path, Path], variant: Path,
                                                                   tmp_path: Path) -> None:
    x, y = folders
    train(load_variant(variant, {"max_steps": 1}), x, y, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(UserError, match="already holds a run"):
        train(load_variant(variant, {"max_steps": 1}), x, y, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(UserError, match="ds_cycle: True -> False"):
        train(load_variant(variant, {"ds_cycle": False}), x, y, tmp_path / "run", device="cpu", progress=False,
              resume=True)


def test_the_shipped_variants() -> None:
    assert variant_names() == ["vib", "vib_no_ds_cycle"]
    full, ablated = load_variant("vib"), load_variant("vib_no_ds_cycle")
    assert full.ds_cycle and not ablated.ds_cycle
    assert (full.lr, full.lambda1, full.lambda2, full.lambda3) == (0.0002, 10.0, 1.0, 1.0)
    assert (full.alpha1, full.alpha2, full.alpha3, full.alpha4, full.beta) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert full.mmd_sigma == pytest.approx(8 / 2**0.5)
    for name in variant_names():
        assert (VARIANTS_DIR / f"{name}.toml").read_text().startswith("# The document's")


def test_the_cli_trains_and_refuses_bad_input_on_one_line(folders: tuple[Path, Path], variant: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    x, y = folders
    argv = ["one-to-many", "train", "--generator", str(variant), "--domain-x", str(x), "--domain-y", str(y),
            "--out", str(tmp_path / "run"), "--max-steps", "1", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 1
    capsys.readouterr()
    bad = {"--generator": "no_such_variant", "--domain-y": str(tmp_path / "missing")}
    one_code = [*argv, "--generator", "vib", "--batch-size", "1", "--out", str(tmp_path / "b1")]
    assert main(one_code) == 2 and "at least two codes per step" in capsys.readouterr().err
    assert not (tmp_path / "b1").exists()
    for flag, value in bad.items():
        wrong = list(argv)
        wrong[wrong.index(flag) + 1] = value
        wrong[wrong.index("--out") + 1] = str(tmp_path / f"other{flag}")
        assert main(wrong) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main([*argv[:7], str(tmp_path / "empty"), "--out", str(tmp_path / "e"), "--device", "cpu"]) == 2
    assert "holds no images" in capsys.readouterr().err
