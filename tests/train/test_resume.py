"""Resuming: an interrupted + resumed run equals an uninterrupted one bit for bit, and a run killed with
SIGKILL while writing checkpoints leaves a checkpoint that loads and resumes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from p2p_eval.config import TrainConfig
from p2p_eval.train.trainer import train


#: On top of the tiny config: jitter and paper dropout on, linear LR decay, 4 epochs: every RNG matters.
RESUME = dict(epochs=4, jitter=True, dropout="paper", lr_schedule="linear", seed=7)


def full_state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("interrupt_at", [4, 6])  # mid-epoch (3 steps per epoch) and at an epoch boundary
def test_resumed_run_equals_uninterrupted(tiny_data: Path, tmp_path: Path, interrupt_at: int, tiny_config) -> None:
    straight = train(tiny_config(**RESUME), tiny_data, tmp_path / "straight", device="cpu", progress=False)
    split = tmp_path / "split"
    train(tiny_config(**RESUME, max_steps=interrupt_at), tiny_data, split, device="cpu", progress=False)
    assert full_state(split)["step"] == interrupt_at
    # scramble the global RNGs: the resumed run must restore them from the checkpoint
    torch.manual_seed(12345)
    random.seed(12345)
    train(tiny_config(**RESUME), tiny_data, split, device="cpu", resume=True, progress=False)

    a, b = full_state(straight), full_state(split)
    assert a["step"] == b["step"] == 12
    assert_same_tensors(a["generator"], b["generator"])
    assert_same_tensors(a["discriminator"], b["discriminator"])
    for key in ("exp_avg", "exp_avg_sq"):
        for pid, st in a["opt_d"]["state"].items():
            assert torch.equal(st[key], b["opt_d"]["state"][pid][key])
    assert a["opt_g"]["param_groups"][0]["lr"] == b["opt_g"]["param_groups"][0]["lr"]
    # the log of the resumed run holds every step exactly once
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (split / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10, 12]


WRITER = textwrap.dedent("""
    import sys
    from p2p_eval.config import TrainConfig
    from p2p_eval.train.trainer import train
    cfg = TrainConfig(name="kill", ngf=32, ndf=32, size=32, batch_size=1, epochs=1000, seed=1).resolved()
    train(cfg, sys.argv[1], sys.argv[2], device="cpu", resume=True, progress=False, checkpoint_every=1)
""")


def test_sigkill_during_checkpoint_writes_leaves_loadable_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    """Kill the trainer (checkpointing every step) at the moment a temp checkpoint file is being written."""
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "last.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    hit_mid_write, step = 0, 0
    for _attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tiny_data), str(run)], env=env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if ckpt.exists() and list(ckpt.parent.glob(".last.pt.*.tmp")):
                    break  # a previous checkpoint exists and the next one is being written right now
                time.sleep(0.002)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        hit_mid_write += bool(list(ckpt.parent.glob(".last.pt.*.tmp")))
        state = torch.load(ckpt, weights_only=True)  # must load: never a half-written file
        assert state["step"] >= step
        step = state["step"]
    assert hit_mid_write >= 1, "no kill landed during a checkpoint write"
    # the killed run resumes from its checkpoint; stale temp files are cleaned up
    cfg = TrainConfig(name="kill", ngf=32, ndf=32, size=32, batch_size=1, epochs=1000, seed=1, max_steps=step + 1).resolved()
    train(cfg, tiny_data, run, device="cpu", resume=True, progress=False)
    assert full_state(run)["step"] == step + 1
    assert not list(ckpt.parent.glob(".last.pt.*.tmp"))
    assert (run / "DONE").exists()


def test_checkpoint_without_the_newer_settings_resumes(tiny_data: Path, tmp_path: Path, tiny_config) -> None:
    # a run saved before the blog network's settings (lambda_l2, d_arch, d_input) existed: they take their defaults
    run = tmp_path / "old"
    train(tiny_config(max_steps=1), tiny_data, run, device="cpu", progress=False)
    state = full_state(run)
    for key in ("lambda_l2", "d_arch", "d_input"):
        del state["config"][key]
    torch.save(state, run / "checkpoints" / "last.pt")
    train(tiny_config(max_steps=2), tiny_data, run, device="cpu", resume=True, progress=False)
    assert full_state(run)["step"] == 2
