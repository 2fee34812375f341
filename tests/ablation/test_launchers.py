"""Launchers: submitit's local executor (the Slurm code path) and one subprocess per GPU id, each training in the
precision its job asks for."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p2p_eval.ablation.launchers import run_gpus, run_submitit
from p2p_eval.ablation.presets import PRESETS, row_config
from p2p_eval.ablation.runner import JobSettings, job_state, logged_precision, make_job
from p2p_eval.ablation.tables import GENERATORS_DIR
from p2p_eval.device import resolve_precision
from p2p_eval.errors import UserError
from p2p_eval.fsutil import file_sha256

pytestmark = pytest.mark.slow

#: A precision other than what ``auto`` picks on this CPU: the launcher must pass the job's choice to training.
ASKED = "fp32" if resolve_precision("auto", torch.device("cpu")) == "bf16" else "bf16"


def _job(name: str, data: Path, runs: Path, seg: Path, precision: str = "auto"):
    cfg, _ = row_config(GENERATORS_DIR / f"{name}.toml", PRESETS["smoke"], {"max_steps": 1, "ngf": 8, "ndf": 8})
    return make_job(cfg, runs, JobSettings(str(data), str(seg), file_sha256(seg), device="cpu", progress=False,
                                           precision=precision))


def test_submitit_local_executor_runs_a_row(synth_small: Path, ablation_segmenter: Path, tmp_path: Path) -> None:
    job = _job("l1", synth_small, tmp_path / "runs", ablation_segmenter, precision=ASKED)
    run_submitit([job], tmp_path / "slurm", cluster="local", gpus_per_job=0, time_min=10, progress=False)
    assert job_state(job) == "done" and logged_precision(job.run) == ASKED
    assert len(list(job.fakes.glob("*.png"))) == len(list((synth_small / "val").iterdir()))
    assert list((tmp_path / "slurm").rglob("*_log.out"))  # submitit's per-job logs


def test_gpu_launcher_runs_rows_in_subprocesses_and_reports_failures(synth_small: Path, ablation_segmenter: Path,
                                                                       tmp_path: Path) -> None:
    good = _job("l1_cgan_d1", synth_small, tmp_path / "runs", ablation_segmenter, precision=ASKED)
    bad = _job("l1", tmp_path / "no_data", tmp_path / "runs", ablation_segmenter)
    with pytest.raises(UserError, match=r"1 row\(s\) failed: l1 "):
        run_gpus([good, bad], ["0", "1"], progress=False, poll_s=0.1)
    assert job_state(good) == "done" and (good.run / "worker.log").is_file() and logged_precision(good.run) == ASKED
    assert "no_data" in (bad.run / "worker.log").read_text()
