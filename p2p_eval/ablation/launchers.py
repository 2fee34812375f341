"""Where the rows run: in this process one after another, one row per GPU at once, or one Slurm job per row.

- :func:`run_local`: sequential, in this process (CPU or the default GPU).
- :func:`run_gpus`: one subprocess per row (``python -m p2p_eval.ablation.worker JOB.json``) with
  ``CUDA_VISIBLE_DEVICES`` set to one id of ``gpus``; as many rows at once as GPUs; each worker logs to
  ``RUN/worker.log``.
- :func:`run_submitit`: one submitit job per row (``submitit.AutoExecutor``: Slurm on a cluster,
  ``cluster="local"`` runs the same jobs as local processes), results collected as they finish.

All three call :func:`p2p_eval.ablation.runner.execute_job`; an overall progress bar counts finished rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import submitit
from tqdm import tqdm

from p2p_eval.ablation.runner import RowJob, execute_job, job_to_json
from p2p_eval.errors import UserError
from p2p_eval.fsutil import atomic_write_text

LAUNCHERS = ("local", "slurm")


def run_local(jobs: Sequence[RowJob], progress: bool = True) -> None:
    """Run the jobs one after another in this process."""
    bar = tqdm(total=len(jobs), desc="ablation rows", unit="row", disable=None if progress else True, position=0)
    for i, job in enumerate(jobs, 1):
        bar.set_postfix_str(job.generator)
        print(f"[row {i}/{len(jobs)}] {job.generator} -> {job.run_dir}", flush=True)
        execute_job(job)
        bar.update(1)
    bar.close()


def run_gpus(jobs: Sequence[RowJob], gpus: Sequence[str], progress: bool = True, poll_s: float = 0.5) -> None:
    """Run one job per GPU at once, each in a subprocess that sees only its GPU; UserError if any fails."""
    if not gpus:
        raise UserError("--gpus needs at least one GPU id, e.g. --gpus 0,1")
    queue = list(jobs)
    running: dict[str, tuple[subprocess.Popen, RowJob, object]] = {}
    failed: list[str] = []
    bar = tqdm(total=len(jobs), desc=f"ablation rows on {len(gpus)} GPUs", unit="row",
               disable=None if progress else True)
    try:
        while queue or running:
            for gpu in gpus:
                if gpu not in running and queue:
                    job = queue.pop(0)
                    job_file = Path(job.run_dir) / "job.json"
                    atomic_write_text(job_file, job_to_json(job))
                    log = open(Path(job.run_dir) / "worker.log", "a")  # noqa: SIM115 (closed when the worker ends)
                    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
                    proc = subprocess.Popen([sys.executable, "-m", "p2p_eval.ablation.worker", str(job_file)],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
                    running[gpu] = (proc, job, log)
                    print(f"[GPU {gpu}] {job.generator} started (log {log.name})", flush=True)
            for gpu, (proc, job, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[gpu]
                bar.update(1)
                if proc.returncode != 0:
                    failed.append(f"{job.generator} (exit {proc.returncode}, log {Path(job.run_dir) / 'worker.log'})")
                print(f"[GPU {gpu}] {job.generator} {'finished' if proc.returncode == 0 else 'FAILED'}", flush=True)
            time.sleep(poll_s)
    finally:
        for proc, _, log in running.values():
            proc.terminate()
            log.close()
        bar.close()
    if failed:
        raise UserError(f"{len(failed)} row(s) failed: {'; '.join(failed)}; fix the cause and rerun with --resume")


def run_submitit(jobs: Sequence[RowJob], folder: Path, cluster: str | None = "slurm", partition: str | None = None,
                 time_min: int = 60 * 24, gpus_per_job: int = 1, cpus_per_job: int = 8, progress: bool = True) -> None:
    """Submit one job per row through submitit and wait for all; UserError listing failed rows and logs.

    ``cluster``: "slurm" (sbatch), "local" (local processes; what the tests use) or None (auto-detect).
    """
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--launcher slurm needs Slurm's sbatch on PATH; run p2p-eval ablate on the cluster's login node "
                        "(or use --launcher local)")
    executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=cluster)
    params: dict[str, object] = {"timeout_min": time_min, "gpus_per_node": gpus_per_job, "cpus_per_task": cpus_per_job,
                                 "name": "p2p-ablate", "nodes": 1, "tasks_per_node": 1}
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    submitted = [(job, executor.submit(execute_job, job)) for job in jobs]
    for job, handle in submitted:
        print(f"[submitit {handle.job_id}] {job.generator} -> {job.run_dir}", flush=True)
    bar = tqdm(total=len(submitted), desc="ablation rows (submitit)", unit="row", disable=None if progress else True)
    failed: list[str] = []
    pending = list(submitted)
    while pending:
        for item in list(pending):
            job, handle = item
            if not handle.done():
                continue
            pending.remove(item)
            bar.update(1)
            try:
                handle.result()
            except Exception as exc:  # noqa: BLE001 (a failed job is reported, the others still collected)
                failed.append(f"{job.generator} (job {handle.job_id}: {str(exc).strip().splitlines()[-1]}; "
                              f"logs {handle.paths.stderr})")
        time.sleep(1.0 if pending else 0)
    bar.close()
    if failed:
        raise UserError(f"{len(failed)} row(s) failed: {'; '.join(failed)}; fix the cause and rerun with --resume")
