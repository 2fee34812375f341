"""Rows -> runs -> translations -> FCN-scores, resumable: the pipeline behind ``p2p-eval ablate``.

Each distinct row config is one run folder ``RUNS/<generator>-<key>/``, where ``key`` fingerprints the
resolved config (:func:`p2p_eval.config.config_hash`) and the data folder, so a run shared by two tables (the
70x70 L1+cGAN of Tables 1 and 3) is trained once, and a changed config gets a new folder. Inside it, next to
the trainer's files (``config.toml``, ``checkpoints/``, ``DONE``, ...):

    translated/val/<name>.png      the val set under the paper's test-time protocol
    translated/val.json            marker: image count and seconds
    metrics/fcn_<sha12>.json       FCN-score JSON (:func:`p2p_eval.metrics.fcn_score.score_folder`) for the
                                   segmenter whose sha256 starts with <sha12>, plus ``seconds``
    ablation.json                  seconds and device of each stage

Every stage is skipped when its output exists, so a rerun with unchanged configs trains nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2p_eval.config import TrainConfig, config_hash
from p2p_eval.errors import UserError
from p2p_eval.fsutil import write_json


@dataclass(frozen=True)
class RowJob:
    """Everything one worker (this process, a subprocess on one GPU, a Slurm job) needs for one run."""

    generator: str
    config: dict[str, Any]
    key: str
    run_dir: str
    data_dir: str
    segmenter: str
    segmenter_sha: str
    device: str = "auto"
    resume: bool = True
    progress: bool = True

    @property
    def cfg(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config, source=f"{self.run_dir} (ablation job)")

    @property
    def run(self) -> Path:
        return Path(self.run_dir)

    @property
    def fakes(self) -> Path:
        return self.run / "translated" / "val"

    @property
    def score_file(self) -> Path:
        return self.run / "metrics" / f"fcn_{self.segmenter_sha[:12]}.json"


def run_key(cfg: TrainConfig, data_dir: Path) -> str:
    """12 hex digits of sha256(config hash, resolved data folder): the identity of a run."""
    text = f"{config_hash(cfg)}\n{Path(data_dir).resolve()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def make_job(cfg: TrainConfig, data_dir: Path, runs_dir: Path, segmenter: Path, segmenter_sha: str,
             device: str = "auto", resume: bool = True, progress: bool = True) -> RowJob:
    """The job of one row config (its run folder is ``runs_dir/<name>-<key>``)."""
    key = run_key(cfg, data_dir)
    return RowJob(generator=cfg.name, config=cfg.to_dict(), key=key, run_dir=str(Path(runs_dir) / f"{cfg.name}-{key}"),
                  data_dir=str(data_dir), segmenter=str(segmenter), segmenter_sha=segmenter_sha, device=device,
                  resume=resume, progress=progress)


def _translated(job: RowJob) -> bool:
    marker = job.fakes.parent / "val.json"
    if not marker.is_file():
        return False
    count = json.loads(marker.read_text())["count"]
    return len(list(job.fakes.glob("*.png"))) == count


def job_state(job: RowJob) -> str:
    """``"done"`` (trained, translated, scored), ``"partial"`` (a checkpoint or later stage is missing) or ``"new"``."""
    if (job.run / "DONE").is_file() and _translated(job) and job.score_file.is_file():
        return "done"
    return "partial" if (job.run / "checkpoints" / "last.pt").is_file() or (job.run / "DONE").is_file() else "new"


def describe_device(device: str) -> str:
    """Readable name of the device a stage ran on (GPU model, or CPU with its core count)."""
    import torch

    from p2p_eval.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _record(job: RowJob, stage: str, seconds: float) -> None:
    path = job.run / "ablation.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[stage] = {"seconds": round(seconds, 2), "device": describe_device(job.device), "host": os.uname().nodename,
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(path, data)


def execute_job(job: RowJob) -> str:
    """Train (or resume), translate the val set, score it; skip every stage whose output exists.

    Returns the run folder. A run with a checkpoint but no ``DONE`` continues only with ``resume=True``.
    """
    from p2p_eval.metrics.fcn_score import score_folder
    from p2p_eval.train.trainer import train
    from p2p_eval.translate import translate_run

    run = job.run
    if not (run / "DONE").is_file():
        tic = time.perf_counter()
        train(job.cfg, job.data_dir, run, device=job.device, resume=job.resume, progress=job.progress)
        _record(job, "train", time.perf_counter() - tic)
    if not _translated(job):
        tic = time.perf_counter()
        written = translate_run(run, job.data_dir, job.fakes, split="val", device=job.device, progress=job.progress)
        seconds = time.perf_counter() - tic
        write_json(job.fakes.parent / "val.json", {"count": len(written), "seconds": round(seconds, 2)})
        _record(job, "translate", seconds)
    if not job.score_file.is_file():
        tic = time.perf_counter()
        result = score_folder(job.fakes, job.segmenter, data_dir=job.data_dir, device=job.device, progress=job.progress)
        seconds = time.perf_counter() - tic
        write_json(job.score_file, {**result, "seconds": round(seconds, 2)})
        _record(job, f"score_{job.segmenter_sha[:12]}", seconds)
    return str(run)


def job_from_json(text: str) -> RowJob:
    """Inverse of ``json.dumps(dataclasses.asdict(job))`` (what the GPU launcher hands its workers)."""
    return RowJob(**json.loads(text))


def job_to_json(job: RowJob) -> str:
    return json.dumps(dataclasses.asdict(job))


def score_ground_truth(data_dir: Path, segmenter: Path, segmenter_sha: str, runs_dir: Path, device: str,
                       progress: bool = True) -> dict:
    """FCN-score of the real val photos (the ground-truth row), cached per data folder and segmenter."""
    from p2p_eval.metrics.fcn_score import score_folder

    data_key = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]
    path = Path(runs_dir) / "ground_truth" / f"{data_key}_fcn_{segmenter_sha[:12]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    tic = time.perf_counter()
    result = score_folder(None, segmenter, data_dir=data_dir, real=True, device=device, progress=progress)
    result["seconds"] = round(time.perf_counter() - tic, 2)
    write_json(path, result)
    return result


def check_inputs(data_dir: Path, segmenter: Path) -> None:
    """UserError naming the folder or file unless DATA has train/ and val/ images and SEG is a file."""
    from p2p_eval.errors import require_dir, require_file
    from p2p_eval.imageio import list_images

    for split in ("train", "val"):
        folder = require_dir(Path(data_dir) / split, f"--data {split} folder")
        if not list_images(folder):
            raise UserError(f"{folder} holds no images; --data must be an AB data set with train/ and val/ "
                            "(make one with `p2p-eval data synth` or `p2p-eval data prepare-cityscapes`)")
    require_file(segmenter, "--segmenter checkpoint (train one with `p2p-eval segmenter train`)")
