"""The trainer's run folder, errors, NaN stop, LR schedule and test-time mode, on tiny random data (CPU)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

from p2p_eval.cli import main
from p2p_eval.config import GENERATORS_DIR
from p2p_eval.errors import UserError
from p2p_eval.imageio import read_image
from p2p_eval.train import trainer
from p2p_eval.train.inference import generation_mode
from p2p_eval.models import build_discriminator, build_generator
from p2p_eval.train.loop import EpochSampler, StepModels, adam, lr_factor, train_step
from p2p_eval.train.trainer import train


def test_run_folder_contents(tiny_data: Path, tmp_path: Path, tiny_config) -> None:
    run = train(tiny_config(), tiny_data, tmp_path / "run", device="cpu", progress=False)
    # 6 images at batch 2 -> 3 steps per epoch, 2 epochs
    saved = tomllib.loads((run / "config.toml").read_text())
    assert saved["size"] == 32 and saved["num_downs"] == 5 and saved["batch_size"] == 2
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert [r["epoch"] for r in records] == [1, 2, 2]
    for r in records:
        assert {"D", "D_real", "D_fake", "G", "G_GAN", "G_L1", "lr", "images_per_s"} <= r.keys()
        assert r["lr"] == pytest.approx(2e-4) and r["images_per_s"] > 0
        assert r["G"] == pytest.approx(r["G_GAN"] + r["G_L1"], rel=1e-5)
    for epoch in (1, 2):  # 3 val rows of input | output | target at 32x32
        grid = read_image(run / "samples" / f"epoch_{epoch:03d}.png")
        assert grid.shape == (3, 3 * 32, 3 * 32)
    # the grid's input and target columns are the val pair, resized without jitter (B is the input, BtoA)
    ab = read_image(tiny_data / "val" / "1.png")
    assert torch.equal(grid[:, :32, :32], ab[:, :, 32:]) and torch.equal(grid[:, :32, 64:], ab[:, :, :32])
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["epoch"] == 2 and state["epoch_offset"] == 0
    assert state["config"] == tiny_config().to_dict()
    assert (run / "DONE").exists()

    # resuming a finished run does nothing
    before = (run / "checkpoints" / "last.pt").stat().st_mtime_ns
    train(tiny_config(), tiny_data, run, device="cpu", resume=True, progress=False)
    assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == before
    # a new run into the same folder is refused; so is resuming with another config
    with pytest.raises(UserError, match="--resume"):
        train(tiny_config(), tiny_data, run, device="cpu", progress=False)
    with pytest.raises(UserError, match=r"lr: 0.0002 -> 0.001"):
        train(tiny_config(lr=1e-3), tiny_data, run, device="cpu", resume=True, progress=False)


def test_same_seed_same_weights_and_l1_only_has_no_discriminator(tiny_data: Path, tmp_path: Path, tiny_config) -> None:
    cfg = tiny_config(gan="none", max_steps=3)
    a = train(cfg, tiny_data, tmp_path / "a", device="cpu", progress=False)
    b = train(cfg, tiny_data, tmp_path / "b", device="cpu", progress=False)
    sa = torch.load(a / "checkpoints" / "last.pt", weights_only=True)
    sb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)
    assert sa["discriminator"] is None and sa["opt_d"] is None
    assert all(torch.equal(sa["generator"][k], sb["generator"][k]) for k in sa["generator"])
    c = train(tiny_config(gan="none", max_steps=3, seed=1), tiny_data, tmp_path / "c", device="cpu", progress=False)
    sc = torch.load(c / "checkpoints" / "last.pt", weights_only=True)
    assert not torch.equal(sa["generator"]["down.0.0.weight"], sc["generator"]["down.0.0.weight"])


class NanAfter(nn.Module):
    """Test stand-in: wraps a generator and returns NaN from the ``n``-th training forward on."""

    def __init__(self, inner: nn.Module, n: int) -> None:
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            if self.calls >= self.n:
                return out * float("nan")
        return out


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tiny_data: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch, tiny_config) -> None:
    real_build = trainer.build_generator
    monkeypatch.setattr(trainer, "build_generator", lambda cfg: NanAfter(real_build(cfg), 3))
    run = tmp_path / "run"
    with pytest.raises(UserError, match=r"at step 3 .*last good checkpoint"):
        train(tiny_config(), tiny_data, run, device="cpu", progress=False, checkpoint_every=1)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())
    assert not (run / "DONE").exists()


def test_lr_factor_matches_public_code_linear_policy() -> None:
    # public code, n_epochs = n_epochs_decay = 100: lr_l = 1 - max(0, e + 1 - 100) / 101
    f = lr_factor("linear", 200)
    assert [f(0), f(98), f(99)] == [1.0, 1.0, 1.0]
    assert f(100) == pytest.approx(100 / 101) and f(199) == pytest.approx(1 / 101)
    assert lr_factor("constant", 200)(199) == 1.0


def test_epoch_sampler_replays_the_rest_of_an_epoch() -> None:
    a = EpochSampler(10, seed=3)
    a.start_epoch()
    full = list(a)
    assert sorted(i for i, _ in full) == list(range(10))
    b = EpochSampler(10, seed=99)
    b.load_state_dict(a.state_dict())
    b.start_epoch(offset=4)
    assert list(b) == full[4:]


def test_generation_mode_uses_batch_statistics_and_dropout_and_keeps_buffers() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm2d(2), nn.Dropout(0.5))
    net[0].running_mean.fill_(5.0)
    net.eval()
    x = torch.randn(1, 2, 4, 4) * 3 + 1
    # reference: per-channel statistics of this batch (biased variance), eps 1e-5, gamma 1, beta 0
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + 1e-5)
    with generation_mode(net) as m:
        y = m(x)
    kept = y != 0
    assert 0 < kept.float().mean() < 1  # dropout active
    torch.testing.assert_close(y[kept], 2 * normalised[kept], rtol=1e-4, atol=1e-5)  # inverted dropout scale 2
    assert torch.all(net[0].running_mean == 5.0) and not net.training  # buffers and mode restored
    with generation_mode(net, eval_mode=True) as m:
        z = m(x)
    torch.testing.assert_close(z, (x - 5.0) / torch.sqrt(torch.tensor(1.0 + 1e-5)))


def test_cli_train_overrides_and_errors(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "cli"
    code = main(["train", "--generator", "l1", "--data", str(tiny_data), "--out", str(run),
                 "--size", "32", "--epochs", "1", "--batch", "5", "--max-steps", "1", "--device", "cpu", "--quiet"])
    assert code == 0
    saved = tomllib.loads((run / "config.toml").read_text())
    assert (saved["size"], saved["num_downs"], saved["batch_size"], saved["max_steps"], saved["gan"]) == (32, 5, 5, 1, "none")
    assert main(["train", "--generator", str(GENERATORS_DIR / "l1.toml"), "--data", str(tiny_data),
                 "--out", str(run), "--size", "32", "--device", "cpu"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_data_order_and_jitter_do_not_depend_on_worker_processes(tiny_data: Path, tmp_path: Path, tiny_config) -> None:
    cfg = tiny_config(max_steps=3)
    a = train(cfg, tiny_data, tmp_path / "w0", device="cpu", progress=False, num_workers=0)
    b = train(cfg, tiny_data, tmp_path / "w2", device="cpu", progress=False, num_workers=2)
    sa = torch.load(a / "checkpoints" / "last.pt", weights_only=True)["generator"]
    sb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)["generator"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bf16_autocast_path_runs_on_cpu(tiny_data: Path, tmp_path: Path, tiny_config) -> None:
    run = train(tiny_config(max_steps=2), tiny_data, tmp_path / "amp", device="cpu", progress=False, precision="bf16")
    record = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2 and all(v == v for v in record.values())  # finite, no NaN
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["generator"]["down.0.0.weight"].dtype == torch.float32  # weights stay fp32 under autocast


def test_fused_adam_matches_the_per_tensor_loop(tiny_config) -> None:
    """The trainer's fused Adam against torch's reference per-tensor Adam (foreach=False), three D+G steps."""
    cfg = tiny_config()
    cpu = torch.device("cpu")
    x, y = torch.rand(2, 3, cfg.size, cfg.size) * 2 - 1, torch.rand(2, 3, cfg.size, cfg.size) * 2 - 1

    def weights(steps: int, make_opt) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        gen, disc = build_generator(cfg), build_discriminator(cfg)
        models = StepModels(gen, disc, make_opt(gen.parameters()), make_opt(disc.parameters()), cfg)
        for _ in range(steps):
            train_step(models, x, y)
        return {**{f"G.{k}": v for k, v in gen.state_dict().items()}, **{f"D.{k}": v for k, v in disc.state_dict().items()}}

    def reference(params):
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=False)

    fused = weights(3, lambda params: adam(params, cfg, cpu))
    ref, initial = weights(3, reference), weights(0, reference)
    assert adam([nn.Parameter(torch.zeros(1))], cfg, cpu).defaults["fused"]
    moved = max((ref[k].float() - initial[k].float()).abs().max().item() for k in ref)
    differ = max((fused[k].float() - ref[k].float()).abs().max().item() for k in ref)
    assert moved > 1e-4 and differ < 1e-5, f"steps moved weights by {moved}; fused vs per-tensor Adam differ by {differ}"


def test_auto_precision_is_bf16_only_where_bf16_is_native(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from p2p_eval import device as devmod

    with_bf16, without = tmp_path / "bf16", tmp_path / "avx2"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert devmod.cpu_has_native_bf16(with_bf16) and not devmod.cpu_has_native_bf16(without)
    assert not devmod.cpu_has_native_bf16(tmp_path / "missing")
    cpu = torch.device("cpu")
    for native, expected in [(True, "bf16"), (False, "fp32")]:
        monkeypatch.setattr(devmod, "cpu_has_native_bf16", lambda native=native: native)
        assert devmod.resolve_precision("auto", cpu) == expected
        assert devmod.resolve_precision("fp32", cpu) == "fp32" and devmod.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(UserError, match="unknown precision 'fp16'"):
        devmod.resolve_precision("fp16", cpu)


def test_resume_keeps_the_precision_a_run_started_with(tiny_data: Path, tmp_path: Path, tiny_config,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from p2p_eval import device as devmod

    monkeypatch.setattr(devmod, "cpu_has_native_bf16", lambda: True)  # auto would pick bf16 for a new run
    run = train(tiny_config(max_steps=1, log_every=1), tiny_data, tmp_path / "r", device="cpu", progress=False,
                precision="fp32")
    train(tiny_config(max_steps=2, log_every=1), tiny_data, run, device="cpu", progress=False, resume=True)
    logged = [json.loads(line)["precision"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged == ["fp32", "fp32"]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["precision"] == "fp32"
    with pytest.raises(UserError, match="trained in fp32; resume it with --precision fp32"):
        train(tiny_config(max_steps=3, log_every=1), tiny_data, run, device="cpu", progress=False, resume=True,
              precision="bf16")
    fresh = train(tiny_config(max_steps=1, log_every=1), tiny_data, tmp_path / "auto", device="cpu", progress=False)
    assert json.loads((fresh / "log.jsonl").read_text().splitlines()[-1])["precision"] == "bf16"


def test_cli_direction_picks_the_input_half(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from p2p_eval.imageio import write_png

    for split in ("train", "val"):  # A half black (-1), B half mid-grey (about 0)
        for i in range(2):
            ab = torch.zeros(3, 32, 64, dtype=torch.uint8)
            ab[:, :, 32:] = 128
            write_png(tmp_path / "d" / split / f"{i}.png", ab)
    l1 = {}
    for direction in ("AtoB", "BtoA"):
        run = tmp_path / direction
        assert main(["train", "--generator", "l1", "--data", str(tmp_path / "d"), "--out", str(run), "--size", "32",
                     "--max-steps", "1", "--direction", direction, "--device", "cpu", "--quiet"]) == 0
        assert tomllib.loads((run / "config.toml").read_text())["direction"] == direction
        record = json.loads((run / "log.jsonl").read_text().splitlines()[0])
        l1[direction] = next(v for k, v in record.items() if "l1" in k.lower())
    # an untrained generator outputs about 0: near the grey target B (AtoB), about 1 away from the black target A
    assert 2 * l1["AtoB"] < l1["BtoA"]
    assert main(["train", "--generator", "l1", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "x"),
                 "--direction", "up", "--device", "cpu", "--quiet"]) == 2
    assert "direction" in capsys.readouterr().err
