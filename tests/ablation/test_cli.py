"""``p2p-eval ablate`` user errors: one line naming the problem, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p_eval.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture, preset: bool = True) -> tuple[int, str]:
    code = main(["ablate", *(["--preset", "smoke"] if preset else []), *args])
    return code, capsys.readouterr().err


def test_unknown_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _run(["--table", "4", "--data", str(tmp_path / "d"), "--segmenter", "s.pt", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "unknown table '4'; valid: 1, 2, 3, 6, all, blog, modified" in err


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


def test_preset_is_required_in_the_cli_and_the_api(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from p2p_eval.ablation import run_ablation
    from p2p_eval.errors import UserError

    code, err = _run(["--table", "1", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r")], capsys, preset=False)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--preset" in err and "smoke" in err and "quick" in err and "needs a GPU" in err
    with pytest.raises(UserError, match="choose a preset with --preset: smoke"):
        run_ablation("1", tmp_path, None, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_cli_and_api_defaults_agree() -> None:
    from p2p_eval.ablation.pipeline import AblationOptions
    from p2p_eval.cli import build_parser

    args = build_parser().parse_args(["ablate", "--data", "D", "--out", "O"])
    api = AblationOptions()
    for name in ("resume", "retrain_stale", "rescore", "launcher", "device", "preset", "data_name", "precision"):
        assert getattr(args, name) == getattr(api, name), name
    assert args.resume is False and args.preset is None and args.segmenter is None and args.precision is None


def test_bottleneck_norm_and_precision_flags() -> None:
    from p2p_eval.cli import build_parser

    parse = build_parser().parse_args
    base = ["ablate", "--data", "D", "--out", "O"]
    assert parse(base).bottleneck_norm is None  # the preset's rule
    assert parse([*base, "--bottleneck-norm"]).bottleneck_norm is True
    assert parse([*base, "--no-bottleneck-norm"]).bottleneck_norm is False
    assert [parse([*base, "--precision", p]).precision for p in ("auto", "fp32", "bf16")] == ["auto", "fp32", "bf16"]
    assert parse([*base, "--preset", "public"]).preset == "public"


def test_unknown_precision_is_one_line(capsys: pytest.CaptureFixture) -> None:
    code = main(["ablate", "--preset", "paper", "--data", "D", "--out", "O", "--precision", "fp16"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "fp16" in err and "fp32" in err


def test_rescore_and_retrain_stale_conflict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _run(["--table", "1", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--rescore",
                      "--retrain-stale"], capsys)
    assert code == 2 and "--rescore" in err and "--retrain-stale" in err


def test_missing_shipped_segmenter_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("p2p_eval.ablation.runner.shipped_path", lambda: tmp_path / "absent.safetensors")
    code, err = _run(["--table", "1", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "absent.safetensors" in err and "--segmenter" in err


def test_slurm_launcher_needs_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from p2p_eval.ablation.launchers import run_submitit
    from p2p_eval.errors import UserError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="sbatch"):
        run_submitit([], tmp_path, cluster="slurm")


def test_bad_segmenter_and_gpus_fail_before_the_first_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for split in ("train", "val"):
        (tmp_path / "d" / split).mkdir(parents=True)
        (tmp_path / "d" / split / "1.png").write_bytes(b"")
    garbage = tmp_path / "seg.pt"
    garbage.write_bytes(b"not a segmenter")
    code, err = _run(["--table", "1", "--data", str(tmp_path / "d"), "--segmenter", str(garbage),
                      "--out", str(tmp_path / "r"), "--runs-dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and "seg.pt" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing trained
    code, err = _run(["--table", "1", "--data", str(tmp_path / "d"), "--gpus", "x,y", "--out", str(tmp_path / "r"),
                      "--runs-dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and "--gpus x,y" in err and not (tmp_path / "runs").exists()
