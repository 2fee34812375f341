"""``run_ablation``: tables -> row configs (preset + overrides) -> runs (trained once each, resumable) ->
translations -> scores -> report (tables, rank comparison, Figure 7, samples, index.html), in three steps:
:func:`plan_ablation` (check the request, one job per distinct run, find stale runs), :func:`execute_plan`
(train, translate and score what is not done) and :func:`write_ablation_report`.

Each table's ``kind`` says how its rows are scored: FCN-score of the generated photos (Tables 1-3), the
generated colour label maps decoded and scored against the true labels (Table 6), or image metrics against
the real photos (``modified``, on Facades); a run shared by tables of different kinds gets every score. One
call runs tables of one data set (``--table all``: the Cityscapes tables 1, 2, 3, 6; ``--table modified``: the
Facades one) and checks that ``--data`` fits it (:func:`check_data_fits`).

The Python API and ``p2p-eval ablate`` share their defaults: a preset must be named (:data:`PRESET_REQUIRED`),
``resume`` is off (unfinished runs stop the command and are named), ``segmenter`` None is the shipped
Cityscapes segmenter, ``precision`` None is the preset's (:mod:`p2p_eval.ablation.presets`). Staleness,
``retrain_stale`` / ``rescore`` and how the precision enters a run's key: see :mod:`p2p_eval.ablation.runner`.

Every report names the preset's reference (the paper, or the public PyTorch code) and lists the differences
from it that remain (:func:`differences`): the preset's own, the settings of rows that differ from the
reference's (:data:`p2p_eval.ablation.presets.REFERENCE_SETTINGS`), image size, training length, precision
and the segmenter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import p2p_eval.ablation.provenance as provenance
from p2p_eval.ablation.figures import FIGURE7_SETS, figure7, sample_grid
from p2p_eval.ablation.html import write_index
from p2p_eval.ablation.launchers import LAUNCHERS, run_gpus, run_local, run_submitit
from p2p_eval.ablation.presets import PAPER, REFERENCE_SETTINGS, Preset, bottleneck_applies, get_preset, row_config
from p2p_eval.ablation.report import report_path, segmenter_frame, table_record, write_report_json, write_tables
from p2p_eval.ablation.runner import (JobSettings, RowJob, check_inputs, job_state, logged_precision, make_job,
                                      resolve_segmenter, score_ground_truth, score_true_labels_cached, set_aside,
                                      stale_reasons, trained)
from p2p_eval.ablation.tables import TableSpec, load_table, parse_tables
from p2p_eval.device import PRECISIONS, check_gpus, resolve_device
from p2p_eval.errors import UserError, require_file, unknown_name
from p2p_eval.fsutil import file_sha256, read_json_or
from p2p_eval.imageio import list_images
from p2p_eval.metrics.labelmap import FAR_DISTANCE, palette_share
from p2p_eval.metrics.lpips import LPIPS_ENV, default_lin_path

DEFAULT_RUNS_DIR = Path("runs")
#: The error for a missing preset (CLI and API): a default would start 12 runs of 200 epochs on a CPU.
PRESET_REQUIRED = ("choose a preset with --preset: smoke (32 px, 120 images per row: minutes on a CPU), quick "
                   "(64 px, 1200 images per row: hours on a 2-core CPU), paper or public (256 px, 200 epochs per "
                   "row, 12 runs: days, needs a GPU; the paper's protocol or the public PyTorch code's defaults)")


def git_commit() -> str | None:
    """The checkout's ``git describe --always --dirty`` (None outside a git checkout)."""
    return provenance.git_commit()


@dataclass(frozen=True)
class AblationOptions:
    """How :func:`run_ablation` runs (everything but the tables, the data, the segmenter and the report folder).

    ``preset`` ("smoke", "quick", "paper", "public") is required; ``precision`` ("auto", "fp32", "bf16") is the
    training precision of every row, None: the preset's (fp32 for paper and public, auto otherwise).
    ``launcher``: "local" (sequential, or one row per GPU with ``gpus``) or "slurm" (submitit; ``slurm`` =
    {"partition", "time_min", "gpus_per_job", "cluster"}).
    ``runs_dir``: where runs live (None: ``./runs``, git-ignored). ``resume`` continues unfinished runs;
    ``retrain_stale`` retrains stale ones; ``rescore`` only translates and scores finished runs.
    ``lpips_weights`` (else ``$P2P_EVAL_LPIPS_WEIGHTS``; ``lpips_lin``: the linear layers, default torchmetrics'
    copy) adds LPIPS to image-metric tables. ``report_name`` defaults to the report folder's name; ``data_name``
    (what the data are, e.g. "synthetic street scenes") titles every table, default the data folder's name."""

    preset: str | None = None
    launcher: str = "local"
    gpus: Sequence[str] | None = None
    resume: bool = False
    overrides: dict[str, Any] | None = None
    runs_dir: str | Path | None = None
    device: str = "auto"
    report_name: str | None = None
    slurm: dict[str, Any] | None = None
    progress: bool = True
    retrain_stale: bool = False
    rescore: bool = False
    lpips_weights: str | Path | None = None
    lpips_lin: str | Path | None = None
    data_name: str | None = None
    precision: str | None = None


@dataclass
class AblationPlan:
    """The tables, their rows placed on distinct runs, and the provenance they are judged against.

    ``placed[i]`` holds ``(row, job, note)`` for each row of ``specs[i]``; ``jobs`` maps a run key to its job;
    ``precision`` is what every row is asked to train in.
    ``stale`` (key -> reasons) and ``skipped`` (keys ``--rescore`` leaves out) are settled by
    :func:`execute_plan`."""

    ids: list[str]
    specs: list[TableSpec]
    preset: Preset
    data_dir: Path
    runs: Path
    segmenter: Path | None
    seg_sha: str
    now: dict[str, Any]
    score_code: str
    score_codes: dict[str, str]
    jobs: dict[str, RowJob]
    placed: list[list[tuple[Any, RowJob, str]]]
    precision: str = "auto"
    stale: dict[str, list[str]] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)


def run_ablation(tables: str | Sequence[str], data_dir: str | Path, segmenter: str | Path | None, out_dir: str | Path,
                 options: AblationOptions | None = None, **fields: Any) -> Path:
    """Regenerate ``tables`` ("1", "2", "3", "all" or a list) on DATA, scored by SEGMENTER (None: the shipped
    Cityscapes segmenter); write the report to ``out_dir`` and return it. ``fields`` set fields of ``options``
    by name (``preset="smoke", device="cpu"``; see :class:`AblationOptions`).

    Finished runs are reused (same config and data folder -> same run folder); a run with a checkpoint but no
    ``DONE`` is continued with ``resume=True`` and refused otherwise (as ``p2p-eval ablate --resume``). A
    stale run (made by other code or from other data content, see :mod:`p2p_eval.ablation.runner`) is
    reported and flagged, and retrained only with ``retrain_stale=True``. ``rescore=True`` only translates
    (where missing) and scores finished runs, trains nothing, and lists and skips unfinished ones.
    ``segmenter`` is used (and needed) only by FCN-score tables.
    """
    opts = dataclasses.replace(options or AblationOptions(), **fields)
    plan = plan_ablation(tables, data_dir, segmenter, opts)
    seconds = execute_plan(plan, opts)
    print(f"ablation: runs finished in {seconds:.0f} s; scoring the reference rows and writing the report to "
          f"{out_dir}", flush=True)
    return write_ablation_report(plan, Path(out_dir), opts)


def plan_ablation(tables: str | Sequence[str], data_dir: str | Path, segmenter: str | Path | None,
                  opts: AblationOptions) -> AblationPlan:
    """Check the request and the inputs, resolve every row to its run job and find the stale runs."""
    if opts.preset is None:
        raise UserError(PRESET_REQUIRED)
    if opts.rescore and opts.retrain_stale:
        raise UserError("--rescore trains nothing and --retrain-stale retrains: give one of them")
    ids = parse_tables(tables if isinstance(tables, str) else list(tables))
    specs = [load_table(t) for t in ids]
    data_kinds = sorted({spec.data for spec in specs})
    if len(data_kinds) > 1:
        raise UserError(f"tables {', '.join(f'{s.id} ({s.data})' for s in specs)} train on different data sets; run "
                        "them in separate calls: --table all --data CITYSCAPES (Tables 1, 2, 3, 6) and --table modified "
                        "--data FACADES")
    chosen = get_preset(opts.preset)
    precision = opts.precision or chosen.precision
    if precision not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    if opts.launcher not in LAUNCHERS:
        raise unknown_name("launcher", opts.launcher, LAUNCHERS)
    if opts.gpus:
        check_gpus(list(opts.gpus))
    elif opts.launcher == "local":
        resolve_device(opts.device)
    segmenter = resolve_segmenter(segmenter) if any(spec.kind == "fcn" for spec in specs) else None
    data_dir = Path(data_dir)
    runs = Path(opts.runs_dir) if opts.runs_dir is not None else DEFAULT_RUNS_DIR
    check_inputs(data_dir, segmenter)
    check_data_fits(data_dir, data_kinds[0], [spec.id for spec in specs])
    now = provenance.current(data_dir, cache=runs / "cache" / "data_fingerprints.json")
    settings = JobSettings(
        data_dir=str(data_dir), segmenter="" if segmenter is None else str(segmenter),
        segmenter_sha="" if segmenter is None else file_sha256(segmenter), device=opts.device, resume=opts.resume,
        progress=opts.progress, provenance=now, score_code=provenance.score_code_digest(), train=not opts.rescore,
        score_codes={"labels": provenance.score_code_digest(provenance.LABEL_SCORE_FILES),
                     "image": provenance.score_code_digest(provenance.IMAGE_SCORE_FILES)},
        image_options=(_image_options(opts.lpips_weights, opts.lpips_lin)
                       if any(s.kind == "image" for s in specs) else {}), precision=precision)
    jobs: dict[str, RowJob] = {}
    keys: list[list[tuple[Any, str, str]]] = []
    for spec in specs:
        rows = []
        for row in spec.rows:
            cfg, note = row_config(row.generator_file, chosen, opts.overrides)
            job = make_job(cfg, runs, settings, scores=(spec.kind,))
            jobs[job.key] = jobs[job.key].with_scores((spec.kind,)) if job.key in jobs else job
            rows.append((row, job.key, note))
        keys.append(rows)
    placed = [[(row, jobs[key], note) for row, key, note in rows] for rows in keys]
    stale = {key: reasons for key, job in jobs.items() if (reasons := stale_reasons(job, now))}
    return AblationPlan(ids=ids, specs=specs, preset=chosen, data_dir=data_dir, runs=runs, segmenter=segmenter,
                        seg_sha=settings.segmenter_sha, now=now, score_code=settings.score_code,
                        score_codes=settings.score_codes, jobs=jobs, placed=placed, precision=precision,
                        stale=stale)


def execute_plan(plan: AblationPlan, opts: AblationOptions) -> float:
    """Set stale runs aside (``retrain_stale``), refuse unfinished runs without ``resume``, skip unfinished ones
    under ``rescore``, and train / translate / score every run that is not done with the chosen launcher;
    returns the seconds the runs took."""
    jobs, runs = plan.jobs, plan.runs
    if plan.stale and opts.retrain_stale:
        for key in plan.stale:
            print(f"ablation: STALE {jobs[key].run.name} ({'; '.join(plan.stale[key])}): moved to "
                  f"{set_aside(jobs[key], runs)}; retraining it", flush=True)
        plan.stale = {}
    states = {key: job_state(job) for key, job in jobs.items()}
    counts = {s: sum(1 for v in states.values() if v == s) for s in ("done", "partial", "new")}
    now = plan.now
    print(f"ablation: tables {', '.join(plan.ids)}, preset {plan.preset.name} (precision {plan.precision}): "
          f"{len(jobs)} distinct runs "
          f"({counts['done']} done, {counts['partial']} partial, {counts['new']} new, {len(plan.stale)} stale) in "
          f"{runs}; code {provenance.short(now['code_digest'])} ({now['git'] or 'no git checkout'}), "
          f"data {provenance.short(now['data']['fingerprint'])}", flush=True)
    for key, reasons in plan.stale.items():
        print(f"ablation: STALE {jobs[key].run_dir}: {'; '.join(reasons)}; kept and flagged in the report "
              "(pass --retrain-stale to retrain it)", flush=True)
    if opts.rescore:
        plan.skipped = {key for key, job in jobs.items() if not trained(job)}
        for key in plan.skipped:
            print(f"ablation: --rescore skips {jobs[key].run_dir} ({states[key]}: not trained; "
                  "run without --rescore to train it)", flush=True)
    else:
        unfinished_stale = [jobs[k].run_dir for k in plan.stale if states[k] == "partial" and not trained(jobs[k])]
        if unfinished_stale:
            raise UserError(f"stale unfinished runs: {', '.join(unfinished_stale)} (started by other code or on other "
                            "data); pass --retrain-stale to start them over with the current code")
        partial = [jobs[k].run_dir for k, s in states.items() if s == "partial" and not trained(jobs[k])]
        if partial and not opts.resume:
            raise UserError(f"unfinished runs exist: {', '.join(partial)}; pass --resume to continue them "
                            "(or delete those folders to start over)")
    pending = [job for key, job in jobs.items() if states[key] != "done" and key not in plan.skipped]
    start = time.perf_counter()
    if pending:
        _launch(pending, runs, opts)
    return time.perf_counter() - start


def _launch(pending: list[RowJob], runs: Path, opts: AblationOptions) -> None:
    """Run ``pending`` on Slurm, one per GPU, or one after the other here."""
    if opts.launcher == "slurm":
        slurm = dict(opts.slurm or {})
        run_submitit(pending, runs / "slurm", cluster=slurm.get("cluster", "slurm"), partition=slurm.get("partition"),
                     time_min=int(slurm.get("time_min") or 24 * 60), gpus_per_job=int(slurm.get("gpus_per_job", 1)),
                     progress=opts.progress)
    elif opts.gpus:
        run_gpus(pending, [str(g) for g in opts.gpus], progress=opts.progress)
    else:
        run_local(pending, progress=opts.progress)


def write_ablation_report(plan: AblationPlan, out_dir: Path, opts: AblationOptions) -> Path:
    """Score the reference rows, then write the tables, sample grids, Figure 7, ``report.json`` and
    ``index.html`` to ``out_dir``; returns ``out_dir``."""
    truths = _reference_rows(plan, opts)
    records = []
    for spec, rows in zip(plan.specs, plan.placed):
        side = ground_truth_size([job.cfg.size for _, job, _ in rows])
        records.append(table_record(spec, [_row_record(row, job, note, plan, spec.kind, out_dir)
                                           for row, job, note in rows], truths.get((spec.kind, side))))
    gt = next((v for (kind, _), v in truths.items() if kind == "fcn"), {})
    meta = _meta(plan, opts, opts.report_name or out_dir.name, gt, records, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tables(out_dir, records, meta)
    made = {key for key in plan.jobs if key not in plan.skipped}
    for spec, rows in zip(plan.specs, plan.placed):
        sample_grid(out_dir / f"samples_{spec.name}.png", plan.data_dir, rows[0][1].cfg.direction,
                    [(row.label, job.fakes) for row, job, _ in rows if job.key in made])
    fig = None
    fcn_jobs = [job for spec, rows in zip(plan.specs, plan.placed) if spec.kind == "fcn" for _, job, _ in rows
                if job.key in made]
    if fcn_jobs:
        by_generator = {job.generator: job for job in fcn_jobs}
        first = fcn_jobs[0].cfg
        fig_size = by_generator["l1_cgan"].cfg.size if "l1_cgan" in by_generator else first.size
        fig = figure7(plan.data_dir, {g: j.fakes for g, j in by_generator.items() if g in FIGURE7_SETS.values()},
                      fig_size, first.direction, out_dir, progress=opts.progress)
    write_report_json(out_dir, records, meta, fig)
    index = write_index(out_dir, records, meta, fig)
    print(f"report: {index}", flush=True)
    return out_dir


def _reference_rows(plan: AblationPlan, opts: AblationOptions) -> dict[tuple[str, int], dict]:
    """The reference row's score of each table kind and side: the real photos through the segmenter (FCN-score
    tables), the true labels through the generated maps' resolution (Table 6); cached in the runs folder."""
    truths: dict[tuple[str, int], dict] = {}
    fingerprint = plan.now["data"]["fingerprint"]
    for spec, rows in zip(plan.specs, plan.placed):
        side = ground_truth_size([job.cfg.size for _, job, _ in rows])
        if spec.ground_truth_label is None or (spec.kind, side) in truths:
            continue
        if spec.kind == "fcn":
            truths[spec.kind, side] = score_ground_truth(plan.data_dir, plan.segmenter, plan.seg_sha, plan.runs,
                                                         opts.device, fingerprint, plan.score_code,
                                                         progress=opts.progress, size=side)
        elif spec.kind == "labels":
            truths[spec.kind, side] = score_true_labels_cached(plan.data_dir, plan.runs, fingerprint,
                                                               plan.score_codes["labels"], side, progress=opts.progress)
    return truths


def _row_record(row: Any, job: RowJob, note: str, plan: AblationPlan, kind: str, out_dir: Path) -> dict[str, Any]:
    """What the report needs of one row: its score of ``kind``, paper numbers, config summary (with the settings
    the reference fixes), times, device, the precision its training logged, provenance, its run folder as
    :func:`~p2p_eval.ablation.report.report_path` names it. A row skipped by ``--rescore`` has ``result`` None."""
    cfg, stale, skipped = job.cfg, plan.stale.get(job.key, []), job.key in plan.skipped
    record = provenance.read(job.run) if job.run.is_dir() else None
    base = {"label": row.label, "generator": row.generator, "paper": row.paper,
            "run": report_path(job.run_dir, out_dir), "key": job.key,
            "size": cfg.size, "batch_size": cfg.batch_size, "direction": cfg.direction, "note": note, "stale": stale,
            "settings": {"arch": cfg.arch, "norm": cfg.norm, "epochs": cfg.epochs, "lr_schedule": cfg.lr_schedule,
                         "dropout": cfg.dropout, "bottleneck_norm": cfg.bottleneck_norm, "jitter": cfg.jitter,
                         "test_dropout": cfg.test_dropout},
            "precision": logged_precision(job.run) if job.run.is_dir() else None,
            "commit": (record or {}).get("git"), "version": (record or {}).get("version"),
            "code_digest": (record or {}).get("code_digest"),
            "data_fingerprint": ((record or {}).get("data") or {}).get("fingerprint")}
    if skipped:
        return {**base, "result": None, "steps": None, "images_seen": None, "device": "n/a",
                "seconds": {"train": None, "translate": None, "score": None},
                "note": "; ".join(x for x in (note, "not scored: unfinished run skipped by --rescore") if x)}
    result = json.loads(job.score_path(kind).read_text())
    done = (job.run / "DONE").read_text().split()
    steps = int(done[1]) if len(done) == 2 and done[0] == "step" and done[1].isdigit() else None
    times = read_json_or(job.run / "ablation.json", {})
    times = times if isinstance(times, dict) else {}
    stages = {"train": times.get("train"), "translate": times.get("translate"),
              "score": times.get(job.stage(kind))}
    device = next((s["device"] for s in stages.values() if s), "n/a")
    return {**base, "result": result, "steps": steps, "images_seen": None if steps is None else steps * cfg.batch_size,
            "seconds": {k: (v["seconds"] if v else None) for k, v in stages.items()}, "device": device}


def ground_truth_size(sizes: Sequence[int]) -> int:
    """The side at which a table's ground-truth row is scored: the resolution most of its rows were
    translated at (the smallest of equally common ones), so that the real photos pass through the same
    resolution bottleneck as the generated images they are compared with."""
    counts = Counter(sizes)
    return min(counts, key=lambda side: (-counts[side], side))


#: Share of label-half pixels near the Cityscapes palette above which a data set counts as Cityscapes-like
#: (pix2pix's Cityscapes ~0.97, the synthetic scenes 1.0, CMP Facades ~0.27; :func:`p2p_eval.metrics.labelmap.palette_share`).
CITYSCAPES_SHARE = 0.6


def check_data_fits(data_dir: Path, data_kind: str, tables: Sequence[str]) -> float:
    """UserError unless DATA's label halves look like ``data_kind``'s: Cityscapes tables need label maps in the
    Cityscapes palette (their FCN-score labels and Table 6's targets); the Facades table refuses a Cityscapes-like
    set. Returns the measured share (first 8 val images)."""
    share = palette_share(data_dir)
    which = ", ".join(tables)
    if data_kind == "cityscapes" and share < CITYSCAPES_SHARE:
        raise UserError(f"--data {data_dir} does not look like Cityscapes: only {share:.0%} of its val label-map pixels "
                        f"(the right halves) lie within {FAR_DISTANCE:.0f} RGB units of the Cityscapes palette (pix2pix's "
                        f"Cityscapes: ~97%). Tables {which} need pix2pix's Cityscapes AB files or a synthetic set "
                        "(`p2p-eval data synth`); the Facades table runs with --table modified")
    if data_kind == "facades" and share >= CITYSCAPES_SHARE:
        raise UserError(f"--data {data_dir} looks like Cityscapes ({share:.0%} of its val label-map pixels are "
                        f"Cityscapes palette colours); table {which} trains on CMP Facades labels -> photo: give "
                        "--data ../shared/data/facades (pix2pix's facades AB files, photo left)")
    return share


def _image_options(weights: str | Path | None, lin: str | Path | None) -> dict[str, Any]:
    """LPIPS settings of the image-metric tables: {} without weights (nor ``$P2P_EVAL_LPIPS_WEIGHTS``), else the
    files and a 12-digit tag of their sha256 (the cached score's file name)."""
    value = weights if weights is not None else os.environ.get(LPIPS_ENV)
    if not value:
        return {}
    path = require_file(Path(value), "--lpips-weights file (torchvision's alexnet-owt-7be5be79.pth)")
    lin_path = Path(lin) if lin is not None else default_lin_path()
    if lin_path is not None:
        require_file(lin_path, "--lpips-lin file (LPIPS v0.1 alex.pth)")
    tag = hashlib.sha256(f"{file_sha256(path)} {file_sha256(lin_path) if lin_path else ''}".encode()).hexdigest()[:12]
    return {"lpips": {"weights": str(path), "lin": str(lin_path or "")}, "lpips_tag": tag}


#: What each class-averaging convention of :mod:`p2p_eval.confusion` means, as the report explains it.
MEANS = {"nanmean": "over the classes present (convention nanmean, as cityscapesscripts: accuracy over the classes "
                    "in the labels, IoU over those in the labels or predictions)",
         "original": "over all 19 classes, an absent class counting 0 (convention original: the original script's "
                     "diag / (sum + 1e-12))"}

_PROTOCOLS = {
    "labels": ("Table 6: generated colour label maps decoded to train ids by nearest Cityscapes palette colour "
               "(far pixels, > 50 RGB units from every colour, kept at their nearest colour and counted), resized "
               "nearest-neighbour to the true labels' size, one confusion matrix over the val set, void labels "
               "ignored, class means over the classes present"),
    "image": ("image metrics: generated vs real val photo at the generated side (real photo resized bilinear), "
              "MSE on [0, 1] images, PSNR (data range 255), SSIM (Gaussian 11x11, sigma 1.5), each averaged over "
              "images; Lab histogram intersection of the whole set with the real set; LPIPS (AlexNet) when weights "
              "are given"),
}


def _meta(plan: AblationPlan, opts: AblationOptions, name: str, gt: dict, records: list[dict[str, Any]],
          out_dir: Path) -> dict[str, Any]:
    """The report's provenance and protocol: preset and its reference, data, segmenter, code, launcher, devices,
    precision, differences from the reference (``differences``: one string, ``difference_list``: the same items
    as a list). Files are named as :func:`~p2p_eval.ablation.report.report_path` names them."""
    rows = [r for t in records for r in t["rows"]]
    unique = {r["run"]: r for r in rows}.values()
    total = sum(v for r in unique for v in r["seconds"].values() if v)
    seg = _portable_segmenter(gt.get("segmenter", {}), out_dir) if plan.segmenter is not None else {}
    kinds = [s.kind for s in plan.specs] or ["fcn"]
    n_train = len(list_images(plan.data_dir / "train"))
    protocol = []
    if "fcn" in kinds:
        means = gt.get("protocol", {}).get("means")
        protocol.append(f"FCN-score: images resized (bilinear) to the segmenter's {segmenter_frame(seg)} input, "
                        f"labels nearest-neighbour, void ignored, class means {MEANS.get(means, means)}")
    protocol += [_PROTOCOLS[k] for k in dict.fromkeys(kinds) if k in _PROTOCOLS]
    preset, now, gpus = plan.preset, plan.now, opts.gpus
    data_path = report_path(plan.data_dir, out_dir)
    found = differences(list(unique), seg if "fcn" in kinds else None, preset, opts.overrides, n_train)
    return {"name": name, "preset": {"name": preset.name, "description": preset.description,
                                     "overrides": preset.overrides, "images_per_row": preset.images_per_row,
                                     "precision": preset.precision, "bottleneck_norm": preset.bottleneck_norm,
                                     "reference": preset.reference},
            "pipeline_check": preset.pipeline_check,
            "overrides": {k: v for k, v in (opts.overrides or {}).items() if v is not None},
            "data": {"path": data_path, "name": opts.data_name or data_path, "train": n_train,
                     "val": len(list_images(plan.data_dir / "val")), "fingerprint": now["data"]["fingerprint"],
                     "files": now["data"]["files"], "kind": plan.specs[0].data if plan.specs else "cityscapes"},
            "segmenter": seg,
            "segmenter_path": "" if plan.segmenter is None else report_path(plan.segmenter, out_dir),
            "protocol": "; ".join(protocol), "kinds": list(dict.fromkeys(kinds)),
            "git": now["git"], "version": now["version"], "code_digest": now["code_digest"],
            "code_files": sorted(now["code_files"]), "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "launcher": opts.launcher + (f" (GPUs {','.join(map(str, gpus))})" if gpus else ""),
            "devices": sorted({r["device"] for r in rows if r["device"] != "n/a"}), "total_seconds": round(total, 1),
            "precision": {"asked": plan.precision, "used": sorted({r["precision"] for r in unique if r["precision"]})},
            "reference": preset.reference, "differences": "; ".join(found), "difference_list": found}


#: How the report names the settings of :data:`~p2p_eval.ablation.presets.REFERENCE_SETTINGS` (config fields).
SETTING_NAMES = {"epochs": "epochs", "lr_schedule": "learning-rate schedule", "dropout": "dropout layers",
                 "bottleneck_norm": "batch norm on the bottleneck", "jitter": "jitter", "test_dropout": "test-time dropout"}


def _value(v: Any) -> str:
    return ("on" if v else "off") if isinstance(v, bool) else str(v)


def _rows_text(differing: list[dict[str, Any]], applicable: list[dict[str, Any]], every: str = "every row") -> str:
    """``every`` when all ``applicable`` rows are in ``differing``, else their generators."""
    if len(differing) == len(applicable):
        return every
    return ", ".join(sorted({r["generator"] for r in differing}))


def differences(rows: list[dict[str, Any]], seg: dict[str, Any] | None, preset: Preset,
                overrides: dict[str, Any] | None, n_train: int) -> list[str]:
    """How the runs (``rows``: one record per run, see :func:`_row_record`) differ from the preset's reference:
    image size, training length, each setting of :data:`~p2p_eval.ablation.presets.REFERENCE_SETTINGS` that some
    rows have otherwise (the bottleneck norm counted only where it applies), the precision the runs logged, the
    segmenter (``seg``: None without FCN-score tables), then the preset's own known differences."""
    ref = REFERENCE_SETTINGS[preset.reference]
    who = "paper" if preset.reference == PAPER else "public code"
    sizes = sorted({r["size"] for r in rows})
    seen = sorted({r["images_seen"] for r in rows if r["images_seen"] is not None})
    found = [f"images {'/'.join(str(s) for s in sizes)} px ({who} {ref['size']}x{ref['size']})"
             if sizes != [ref["size"]] else ""]
    if preset.images_per_row is not None and not ({"epochs", "max_steps"} & set(overrides or {})):
        found.append(f"{'/'.join(str(s) for s in seen)} training image{'' if seen == [1] else 's'} per row ({who}: "
                     f"{ref['epochs']} epochs = {ref['epochs'] * n_train} images here)")
    elif (overrides or {}).get("max_steps"):
        steps = overrides["max_steps"]
        found.append(f"at most {steps} training step{'' if steps == 1 else 's'} per row ({who}: {ref['epochs']} epochs)")
    for key, name in SETTING_NAMES.items():
        applicable = [r for r in rows if key != "bottleneck_norm"
                      or bottleneck_applies(r["settings"]["arch"], r["settings"]["norm"])]
        differing = [r for r in applicable if r["settings"][key] != ref[key]]
        if key == "epochs" and preset.images_per_row is not None and "epochs" not in (overrides or {}):
            continue  # the image budget above stops these runs, not their epochs
        for value in sorted({_value(r["settings"][key]) for r in differing}):
            group = [r for r in differing if _value(r["settings"][key]) == value]
            every = "every row" if len(applicable) == len(rows) else "every U-Net / encoder-decoder row"
            found.append(f"{name} {value} on {_rows_text(group, applicable, every)} ({who}: {_value(ref[key])})")
    for value in sorted({r["precision"] for r in rows if r["precision"] and r["precision"] != ref["precision"]}):
        group = [r for r in rows if r["precision"] == value]
        found.append(f"trained in {value} on {_rows_text(group, rows)} ({who}: {ref['precision']})")
    if seg is not None:
        found.append(f"segmenter {seg.get('arch')}/{seg.get('encoder')} at {segmenter_frame(seg)} trained by p2p-eval, "
                     "labels resized nearest-neighbour (the paper's and the public code's scripts/eval_cityscapes: "
                     "Caffe FCN-8s at 2048x1024)")
    found += list(preset.differences)
    if preset.reference == PAPER:
        found.append("one training run per row (the paper also reports single runs)")
    return [d for d in found if d]


def _portable_segmenter(seg: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The segmenter's score record with its file and its training data named by :func:`report_path`."""
    seg = dict(seg)
    if seg.get("path"):
        seg["path"] = report_path(seg["path"], out_dir)
    if isinstance(seg.get("trained_on"), dict) and seg["trained_on"].get("data"):
        seg["trained_on"] = {**seg["trained_on"], "data": report_path(seg["trained_on"]["data"], out_dir)}
    return seg
