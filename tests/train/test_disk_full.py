"""A disk that fills up during training: one line saying what was written and how much space it needs, the
previous checkpoint intact, and ``--resume`` finishing the run once space is freed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from p2p_eval.cli import main
from p2p_eval.train.checkpoint import load_checkpoint


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MiB tmpfs, where the machine lets this user mount one (root in CI); a skip with one line otherwise."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"no tmpfs for the disk-full test (needs mount rights): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_during_a_checkpoint(small_disk: Path, tiny_data: Path, tiny_config, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    variant = tmp_path / "tiny.toml"
    variant.write_text(tiny_config().to_toml())
    run = small_disk / "run"
    argv = ["train", "--generator", str(variant), "--data", str(tiny_data), "--out", str(run), "--device", "cpu",
            "--quiet"]
    assert main([*argv, "--max-steps", "3"]) == 0  # the first epoch (3 steps at batch 2) and its checkpoint
    checkpoint = run / "checkpoints" / "last.pt"
    size = checkpoint.stat().st_size
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - size // 2))  # room for half a checkpoint
    capsys.readouterr()

    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "disk full while writing" in err and "MiB needed" in err
    assert load_checkpoint(checkpoint)["step"] == 3  # the previous checkpoint, intact

    filler.unlink()
    assert main([*argv, "--resume"]) == 0
    assert load_checkpoint(checkpoint)["step"] == 6
    assert (run / "DONE").exists()
