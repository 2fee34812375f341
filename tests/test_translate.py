"""Translation: names and sizes of the outputs, larger sizes, bad sizes, protocols, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p2p_eval.cli import main
from p2p_eval.config import TrainConfig
from p2p_eval.errors import UserError
from p2p_eval.imageio import write_png
from p2p_eval.train.trainer import train
from p2p_eval.translate import translate_run


def write_ab(folder: Path, names: list[str], side: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name in names:
        write_png(folder / f"{name}.png", torch.randint(0, 256, (3, side, 2 * side), generator=g, dtype=torch.uint8))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-step run of a U-Net with 4 downsamplings at 32x32, and data whose val names are not 1..N."""
    root = tmp_path_factory.mktemp("tr")
    write_ab(root / "data" / "train", ["1", "2", "3"], 32, seed=1)
    write_ab(root / "data" / "val", ["frankfurt_000000", "2", "10"], 32, seed=2)
    cfg = TrainConfig(name="tiny", ngf=8, ndf=8, size=32, num_downs=4, batch_size=1, epochs=1, max_steps=2).resolved()
    run = train(cfg, root / "data", root / "run", device="cpu", progress=False)
    return run, root / "data"


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im)


def test_outputs_named_after_inputs_rgb_png(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = tiny_run
    paths = translate_run(run, data, tmp_path / "out", device="cpu", progress=False)
    assert sorted(p.name for p in paths) == ["10.png", "2.png", "frankfurt_000000.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["10.png", "2.png", "frankfurt_000000.png"]
    for p in paths:
        assert read_png(p).shape == (32, 32, 3)


def test_paper_protocol_is_stochastic_but_seeded_and_eval_mode_is_deterministic(tiny_run: tuple[Path, Path],
                                                                               tmp_path: Path) -> None:
    run, data = tiny_run
    a = translate_run(run, data, tmp_path / "a", device="cpu", progress=False)
    b = translate_run(run, data, tmp_path / "b", device="cpu", progress=False)
    e = translate_run(run, data, tmp_path / "e", eval_mode=True, device="cpu", progress=False)
    assert all(np.array_equal(read_png(x), read_png(y)) for x, y in zip(a, b))  # seeded dropout masks
    assert not all(np.array_equal(read_png(x), read_png(y)) for x, y in zip(a, e))  # the protocols differ
    state_before = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state_before["step"] == 2  # translation never writes the run's checkpoint


def test_larger_size_and_bad_size(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = tiny_run
    paths = translate_run(run, data, tmp_path / "big", device="cpu", size=64, progress=False)
    assert all(read_png(p).shape == (64, 64, 3) for p in paths)
    with pytest.raises(UserError, match="multiple of 16"):  # 2**num_downs = 16
        translate_run(run, data, tmp_path / "bad", device="cpu", size=40, progress=False)
    with pytest.raises(UserError, match="split"):
        translate_run(run, data, tmp_path / "none", split="test", device="cpu", progress=False)


def test_cli_translate(tiny_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, data = tiny_run
    assert main(["translate", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "o"), "--device", "cpu",
                 "--eval-mode", "--size", "48"]) == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 3
    assert read_png(tmp_path / "o" / "2.png").shape == (48, 48, 3)
    assert main(["translate", "--run", str(tmp_path / "missing"), "--data", str(data), "--out", str(tmp_path / "x")]) == 2
    assert "run folder not found" in capsys.readouterr().err
