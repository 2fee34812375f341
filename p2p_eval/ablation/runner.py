"""Rows -> runs -> translations -> FCN-scores, resumable: the pipeline behind ``p2p-eval ablate``.

Each distinct row config is one run folder ``RUNS/<generator>-<key>/``, where ``key`` fingerprints the
resolved config (:func:`p2p_eval.config.config_hash`), the data folder's path and the training precision
asked for, so a run shared by two tables (the 70x70 L1+cGAN of Tables 1 and 3) is trained once, and a changed
config gets a new folder.

Precision and the key: a run trained in bf16 is another run than one trained in fp32 (its numbers differ), so
an explicit ``fp32`` or ``bf16`` is part of the key and never finds a run of the other precision. ``auto``
(bf16 where it is native) leaves the key as the config and data alone: what ``auto`` trained in depends on the
machine, and the run's ``log.jsonl`` records it (:func:`logged_precision`, shown per row in the report).

Identity and staleness (:mod:`p2p_eval.ablation.provenance`). The folder key deliberately holds neither the
code nor the data's content: after a change to the trainer, the models or the images in the same data folder,
a run is found in the *same* folder (not orphaned by a new key and silently replaced by a fresh run), and its
``provenance.json`` -- code digest of :data:`~p2p_eval.ablation.provenance.CODE_FILES`, package version, git
commit, data fingerprint, written when the run starts -- shows it is STALE: the digest or the fingerprint
differs from the current one. A stale run is named on the console and flagged in the report; it is retrained
only on request (``--retrain-stale``: its folder is moved aside to ``RUNS/stale/`` and the run starts over),
and an unfinished stale run is never continued by the current code. A run without ``provenance.json`` (made
before provenance was recorded) counts as stale. Moving the data folder gives new keys (new runs), as before.

Inside a run folder, next to the trainer's files (``config.toml``, ``checkpoints/``, ``DONE``, ...):

    provenance.json                what made the run (see above)
    translated/val/<name>.png      the val set under the paper's test-time protocol
    translated/val.json            marker: image count and seconds
    metrics/labelmap.json          Table 6 score of the translations read as label maps (metrics.labelmap),
                                   when a ``labels`` table uses the run
    metrics/image[_lpips<h12>].json  image metrics (``ablation.scoring``), when an ``image`` table uses it
    metrics/fcn_<sha12>.json       FCN-score JSON (:func:`p2p_eval.metrics.fcn_score.score_folder`) for the
                                   segmenter whose sha256 starts with <sha12>, plus ``seconds`` and
                                   ``score_code`` (digest of the scoring sources: made by other scoring code,
                                   the score is recomputed)
    ablation.json                  seconds and device of each stage

Every stage is skipped when its output exists, so a rerun with unchanged code, data and configs trains
nothing; a job with ``train=False`` (``--rescore``) translates and scores but never trains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import p2p_eval.ablation.provenance as provenance
from p2p_eval.ablation.scoring import score_images
from p2p_eval.config import TrainConfig, config_hash
from p2p_eval.device import resolve_device
from p2p_eval.errors import UserError, require_dir, require_file
from p2p_eval.fsutil import read_json_or, write_json
from p2p_eval.imageio import list_images
from p2p_eval.metrics.fcn_score import ScoreOptions, score_generated, score_real_photos
from p2p_eval.metrics.labelmap import score_label_folder, score_true_labels
from p2p_eval.segmentation.model import read_meta, shipped_path
from p2p_eval.train.trainer import train
from p2p_eval.translate import translate_run


@dataclass(frozen=True)
class JobSettings:
    """What every row of one ablation call shares; each :class:`RowJob` carries it (fields described there)."""

    data_dir: str
    segmenter: str
    segmenter_sha: str
    device: str = "auto"
    resume: bool = False
    progress: bool = True
    provenance: dict[str, Any] | None = None
    score_code: str = ""
    train: bool = True
    score_codes: dict[str, str] = field(default_factory=dict)
    image_options: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"


@dataclass(frozen=True, kw_only=True)
class RowJob(JobSettings):
    """Everything one worker (this process, a subprocess on one GPU, a Slurm job) needs for one run.

    ``provenance``: the record written to ``provenance.json`` when the run starts (None: write nothing);
    ``score_code``: digest of the FCN-scoring sources stored with each score; ``train``: False never trains.
    ``scores``: which scores the run needs ("fcn", "labels", "image": one per kind of table using it);
    ``score_codes``: the digest of the other kinds' scoring sources; ``image_options``: {"lpips": {"weights",
    "lin"}, "lpips_tag": 12 hex digits of the weights' sha256} for the image metrics; ``precision``: what the
    training runs in (:data:`p2p_eval.device.PRECISIONS`), the same in every launcher (it travels in the job)."""

    generator: str
    config: dict[str, Any]
    key: str
    run_dir: str
    scores: tuple[str, ...] = ("fcn",)

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

    def score_path(self, kind: str) -> Path:
        """Where the score of ``kind`` ("fcn", "labels", "image") is cached."""
        if kind == "fcn":
            return self.score_file
        if kind == "labels":
            return self.run / "metrics" / "labelmap.json"
        tag = self.image_options.get("lpips_tag")
        return self.run / "metrics" / (f"image_lpips{tag}.json" if tag else "image.json")

    def stage(self, kind: str) -> str:
        """The ``ablation.json`` key of the scoring stage of ``kind``."""
        return f"score_{self.segmenter_sha[:12]}" if kind == "fcn" else f"score_{kind}"

    def code_of(self, kind: str) -> str:
        return self.score_code if kind == "fcn" else self.score_codes.get(kind, "")

    def with_scores(self, kinds: tuple[str, ...]) -> RowJob:
        """This job also computing the scores ``kinds`` (a run shared by tables of different kinds)."""
        return dataclasses.replace(self, scores=tuple(dict.fromkeys((*self.scores, *kinds))))


def run_key(cfg: TrainConfig, data_dir: Path, precision: str = "auto") -> str:
    """12 hex digits of sha256(config hash, resolved data folder[, precision unless ``auto``]): the run folder's
    key (see the module doc: code and data content are checked through ``provenance.json``, not the key)."""
    text = f"{config_hash(cfg)}\n{Path(data_dir).resolve()}"
    if precision != "auto":
        text += f"\nprecision {precision}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def make_job(cfg: TrainConfig, runs_dir: Path, settings: JobSettings, scores: tuple[str, ...] = ("fcn",)) -> RowJob:
    """The job of one row config (its run folder is ``runs_dir/<name>-<key>``); ``settings.segmenter`` may be ""
    when ``scores`` has no "fcn"."""
    key = run_key(cfg, Path(settings.data_dir), settings.precision)
    shared = {f.name: getattr(settings, f.name) for f in dataclasses.fields(JobSettings)}
    return RowJob(generator=cfg.name, config=cfg.to_dict(), key=key, run_dir=str(Path(runs_dir) / f"{cfg.name}-{key}"),
                  scores=tuple(scores), **{**shared, "score_codes": dict(settings.score_codes),
                                           "image_options": dict(settings.image_options)})


def _translated(job: RowJob) -> bool:
    marker = job.fakes.parent / "val.json"
    if not marker.is_file():
        return False
    try:
        count = json.loads(marker.read_text())["count"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # a damaged marker: translate again
    return len(list(job.fakes.glob("*.png"))) == count


def _cached_score(path: Path, score_code: str) -> dict | None:
    """The score JSON at ``path`` when it exists and was made by the scoring code ``score_code`` ("" : any)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (score_code and data.get("score_code") != score_code):
        return None
    return data


def trained(job: RowJob) -> bool:
    """True when the run finished training (its ``DONE`` marker exists)."""
    return (job.run / "DONE").is_file()


def job_state(job: RowJob) -> str:
    """``"done"`` (trained, translated, and every score of ``job.scores`` made by the current scoring code, the FCN-score
    by this segmenter), ``"partial"`` (started: a checkpoint or a later stage is missing) or ``"new"``."""
    if trained(job) and _translated(job) and all(_cached_score(job.score_path(k), job.code_of(k)) is not None
                                                 for k in job.scores):
        return "done"
    return "partial" if (job.run / "checkpoints" / "last.pt").is_file() or trained(job) else "new"


def stale_reasons(job: RowJob, now: dict[str, Any]) -> list[str]:
    """Why an existing run is stale under the current provenance ``now`` ([] when current or not started)."""
    if job_state(job) == "new":
        return []  # nothing made yet: a started-over run records the current provenance
    return provenance.stale_reasons(provenance.read(job.run), now)


def set_aside(job: RowJob, runs_dir: Path) -> Path:
    """Move a stale run folder to ``RUNS/stale/<folder>-<time>`` (kept, never deleted); returns the new path."""
    dest = Path(runs_dir) / "stale" / f"{job.run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(job.run), str(dest))
    return dest


def describe_device(device: str) -> str:
    """Readable name of the device a stage ran on (GPU model, or CPU with its core count)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def logged_precision(run: Path) -> str | None:
    """The precision of the run's last logged step (``log.jsonl``), None for logs without it."""
    lines = (run / "log.jsonl").read_text().splitlines() if (run / "log.jsonl").is_file() else []
    return json.loads(lines[-1]).get("precision") if lines else None


def _record(job: RowJob, stage: str, seconds: float, precision: str | None = None) -> None:
    """Time, device (with the training precision) and host of one stage, in ``RUN/ablation.json``."""
    path = job.run / "ablation.json"
    data = read_json_or(path, {})
    data = data if isinstance(data, dict) else {}
    device = describe_device(job.device) + (f", {precision}" if precision else "")
    data[stage] = {"seconds": round(seconds, 2), "device": device, "host": os.uname().nodename,
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(path, data)


def execute_job(job: RowJob) -> str:
    """Train (or resume), translate the val set, compute each score of ``job.scores``; skip every stage whose
    output exists.

    Returns the run folder. A run with a checkpoint but no ``DONE`` continues only with ``resume=True``;
    a job with ``train=False`` raises UserError for a run that is not trained. A run started here gets
    ``provenance.json`` (``job.provenance``) before its first step.
    """
    run = job.run
    if not trained(job):
        if not job.train:
            raise UserError(f"{run} has not finished training (no DONE); re-scoring does not train: "
                            "run `p2p-eval ablate` without --rescore to train it")
        if job.provenance is not None and not (run / "checkpoints" / "last.pt").is_file():
            provenance.write(run, job.provenance)  # a run starting from step 0 is made by the current code
        tic = time.perf_counter()
        train(job.cfg, job.data_dir, run, device=job.device, resume=job.resume, progress=job.progress,
              precision=job.precision)
        _record(job, "train", time.perf_counter() - tic, precision=logged_precision(run))
    if not _translated(job):
        tic = time.perf_counter()
        written = translate_run(run, job.data_dir, job.fakes, split="val", device=job.device, progress=job.progress)
        seconds = time.perf_counter() - tic
        write_json(job.fakes.parent / "val.json", {"count": len(written), "seconds": round(seconds, 2)})
        _record(job, "translate", seconds)
    for kind in job.scores:
        if _cached_score(job.score_path(kind), job.code_of(kind)) is None:
            tic = time.perf_counter()
            result = _score(job, kind)
            seconds = time.perf_counter() - tic
            write_json(job.score_path(kind), {**result, "seconds": round(seconds, 2), "score_code": job.code_of(kind)})
            _record(job, job.stage(kind), seconds)
    return str(run)


def _score(job: RowJob, kind: str) -> dict:
    """The score JSON of ``kind`` for the job's translations."""
    if kind == "fcn":
        return score_generated(job.fakes, job.segmenter, data_dir=job.data_dir,
                               options=ScoreOptions(device=job.device, progress=job.progress))
    if kind == "labels":
        return score_label_folder(job.fakes, job.data_dir, progress=job.progress)
    if kind == "image":
        cfg = job.cfg
        return score_images(job.fakes, job.data_dir, cfg.size, cfg.direction, lpips=job.image_options.get("lpips"),
                            device=job.device, progress=job.progress)
    raise ValueError(f"unknown score kind {kind!r}")


def job_from_json(text: str) -> RowJob:
    """Inverse of ``json.dumps(dataclasses.asdict(job))`` (what the GPU launcher hands its workers)."""
    data = json.loads(text)
    if "scores" in data:
        data["scores"] = tuple(data["scores"])
    return RowJob(**data)


def job_to_json(job: RowJob) -> str:
    return json.dumps(dataclasses.asdict(job))


def score_ground_truth(data_dir: Path, segmenter: Path, segmenter_sha: str, runs_dir: Path, device: str,
                       data_fp: str, score_code: str = "", progress: bool = True, size: int | None = None) -> dict:
    """FCN-score of the real val photos (the ground-truth row), cached per data *content* (``data_fp``, the
    data fingerprint), segmenter, scoring code and ``size``: ``RUNS/ground_truth/<fp12>_fcn_<sha12>[_at<size>].json``.

    ``size`` (the generated images' side) first brings the photos to that resolution, so that the ground
    truth passes through the same resolution bottleneck as the rows it is compared with; None = as stored.
    """
    suffix = "" if size is None else f"_at{size}"
    path = Path(runs_dir) / "ground_truth" / f"{data_fp[:12]}_fcn_{segmenter_sha[:12]}{suffix}.json"
    return _reference_score(path, score_code, data_fp, lambda: score_real_photos(
        data_dir, segmenter, size, ScoreOptions(device=device, progress=progress)))


def score_true_labels_cached(data_dir: Path, runs_dir: Path, data_fp: str, score_code: str, size: int,
                             progress: bool = True) -> dict:
    """Table 6's reference row (the true labels through ``size`` px, :func:`p2p_eval.metrics.labelmap.score_true_labels`),
    cached per data content, scoring code and size: ``RUNS/ground_truth/<fp12>_labelmap_at<size>.json``."""
    path = Path(runs_dir) / "ground_truth" / f"{data_fp[:12]}_labelmap_at{size}.json"
    return _reference_score(path, score_code, data_fp, lambda: score_true_labels(data_dir, size, progress=progress))


def _reference_score(path: Path, score_code: str, data_fp: str, compute: Callable[[], dict]) -> dict:
    """The score cached at ``path`` when the scoring code ``score_code`` made it; else ``compute()`` with its
    seconds, scoring code and data fingerprint, written to ``path``."""
    cached = _cached_score(path, score_code)
    if cached is not None:
        return cached
    tic = time.perf_counter()
    result = compute()
    result["seconds"] = round(time.perf_counter() - tic, 2)
    result["score_code"] = score_code
    result["data_fingerprint"] = data_fp
    write_json(path, result)
    return result


def resolve_segmenter(segmenter: str | Path | None) -> Path:
    """``segmenter``, or the shipped Cityscapes segmenter (19 train classes) when None; UserError when absent."""
    if segmenter is not None:
        return Path(segmenter)
    path = shipped_path()
    if not path.is_file():
        raise UserError(f"no --segmenter given and the shipped Cityscapes segmenter {path} is missing from this "
                        "install; give --segmenter FILE (train one with `p2p-eval segmenter train`)")
    return path


def check_inputs(data_dir: Path, segmenter: Path | None) -> None:
    """UserError naming the folder or file unless DATA has train/ and val/ images and SEG (unless None) is a
    readable segmenter."""
    for split in ("train", "val"):
        folder = require_dir(Path(data_dir) / split, f"--data {split} folder")
        if not list_images(folder):
            raise UserError(f"{folder} holds no images; --data must be an AB data set with train/ and val/ "
                            "(make one with `p2p-eval data synth` or `p2p-eval data prepare-cityscapes`)")
    if segmenter is not None:
        require_file(segmenter, "--segmenter checkpoint (train one with `p2p-eval segmenter train`)")
        read_meta(segmenter)  # an unreadable segmenter fails here, before any row trains
