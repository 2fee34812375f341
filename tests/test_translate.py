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


def _pixels(paths: list[Path]) -> list[np.ndarray]:
    return [read_png(p) for p in paths]


def test_samples_names_noise_and_seed(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = tiny_run
    paths = translate_run(run, data, tmp_path / "s", device="cpu", samples=3, progress=False)
    # inputs in the data set's order (sorted names), samples 0..2 of each input next to each other
    assert [p.name for p in paths] == [f"{n}_sample{k}.png" for n in ("2", "10", "frankfurt_000000") for k in range(3)]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(p.name for p in paths)
    images = _pixels(paths)
    for i in range(0, 9, 3):  # the three samples of one input differ pairwise (own dropout masks)
        a, b, c = images[i:i + 3]
        assert not np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(b, c)
    again = _pixels(translate_run(run, data, tmp_path / "again", device="cpu", samples=3, progress=False))
    assert all(np.array_equal(x, y) for x, y in zip(images, again))  # same (default) seed: same files
    seeded = [_pixels(translate_run(run, data, tmp_path / f"seed{i}", device="cpu", samples=3, seed=7, progress=False))
              for i in range(2)]
    assert all(np.array_equal(x, y) for x, y in zip(*seeded))  # --seed 7 twice: identical
    assert not any(np.array_equal(x, y) for x, y in zip(images, seeded[0]))  # another seed, other masks


def test_one_sample_keeps_the_plain_files(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = tiny_run
    plain = translate_run(run, data, tmp_path / "plain", device="cpu", progress=False)
    one = translate_run(run, data, tmp_path / "one", device="cpu", samples=1, seed=0, progress=False)  # run seed is 0
    assert [p.name for p in one] == [p.name for p in plain] == ["2.png", "10.png", "frankfurt_000000.png"]
    assert all(np.array_equal(x, y) for x, y in zip(_pixels(plain), _pixels(one)))
    # the first sample of K = 3 is drawn first, with the masks a plain translation of the first input draws
    three = translate_run(run, data, tmp_path / "three", device="cpu", samples=3, progress=False)
    assert np.array_equal(read_png(three[0]), read_png(plain[0]))


def test_samples_need_test_time_dropout(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = tiny_run
    with pytest.raises(UserError, match="--eval-mode turns dropout off"):
        translate_run(run, data, tmp_path / "e", device="cpu", samples=2, eval_mode=True, progress=False)
    root = tmp_path / "nodrop"
    cfg = TrainConfig(name="nodrop", ngf=8, size=32, num_downs=4, gan="none", dropout="none", epochs=1,
                      max_steps=1).resolved()
    quiet = train(cfg, data, root, device="cpu", progress=False)
    with pytest.raises(UserError, match="has no dropout"):
        translate_run(quiet, data, tmp_path / "n", device="cpu", samples=2, progress=False)
    assert len(translate_run(quiet, data, tmp_path / "n1", device="cpu", progress=False)) == 3


def test_cli_translate_samples(tiny_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, data = tiny_run
    assert main(["translate", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "o"), "--device", "cpu",
                 "--samples", "2", "--seed", "3", "--quiet"]) == 0
    assert "wrote 6 images (2 per input)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o").iterdir())[:2] == ["10_sample0.png", "10_sample1.png"]
    for bad in (["--samples", "0"], ["--seed", "-1"]):
        assert main(["translate", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "x"), *bad]) == 2
        assert "out of range" in capsys.readouterr().err
