"""``p2p-eval ablate`` user errors: one line naming the problem, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p_eval.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(["ablate", *args])
    return code, capsys.readouterr().err


def test_unknown_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _run(["--table", "4", "--data", str(tmp_path), "--segmenter", "s.pt", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "unknown table '4'; valid: 1, 2, 3, all" in err


def test_missing_data_and_segmenter(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _run(["--table", "1", "--data", str(tmp_path / "none"), "--segmenter", "s.pt", "--out", str(tmp_path / "r")],
                     capsys)
    assert code == 2 and "none" in err and "train" in err
    for split in ("train", "val"):
        (tmp_path / "d" / split).mkdir(parents=True)
        (tmp_path / "d" / split / "1.png").write_bytes(b"")
    code, err = _run(["--table", "1", "--data", str(tmp_path / "d"), "--segmenter", str(tmp_path / "s.pt"),
                      "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "s.pt" in err and "segmenter train" in err


def test_slurm_launcher_needs_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from p2p_eval.ablation.launchers import run_submitit
    from p2p_eval.errors import UserError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="sbatch"):
        run_submitit([], tmp_path, cluster="slurm")
