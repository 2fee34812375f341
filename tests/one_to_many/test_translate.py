"""Sampling a trained run: K outputs per input from prior codes (different across codes, equal for one seed),
outputs in the style of reference images, and the file names ``metrics --metric lpips-diversity`` reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p2p_eval.cli import main
from p2p_eval.imageio import read_image, to_unit_range
from p2p_eval.metrics.lpips import is_sample_folder
from p2p_eval.one_to_many.config import load_variant
from p2p_eval.one_to_many.data import load_resized
from p2p_eval.one_to_many.trainer import train
from p2p_eval.one_to_many.translate import load_run


@pytest.fixture
def run(folders: tuple[Path, Path], variant: Path, tmp_path: Path) -> Path:
    x, y = folders
    return train(load_variant(variant, {"max_steps": 2}), x, y, tmp_path / "run", device="cpu", progress=False)


def _translate(run: Path, images: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    argv = ["one-to-many", "translate", "--run", str(run), "--images", str(images), "--out", str(out), "--device",
            "cpu", "--quiet", *extra]
    assert main(argv) == 0
    return {p.stem: read_image(p) for p in sorted(out.iterdir())}


def test_samples_differ_by_code_and_repeat_by_seed(run: Path, folders: tuple[Path, Path], tmp_path: Path) -> None:
    x, _ = folders
    first = _translate(run, x, tmp_path / "a", "--to", "y", "--samples", "3", "--seed", "5")
    again = _translate(run, x, tmp_path / "b", "--to", "y", "--samples", "3", "--seed", "5")
    other = _translate(run, x, tmp_path / "c", "--to", "y", "--samples", "3", "--seed", "6")
    assert sorted(first) == sorted(f"{n}_sample{k}" for n in ("0", "1", "9") for k in range(3))
    assert is_sample_folder(tmp_path / "a")
    assert all(torch.equal(first[k], again[k]) for k in first)
    for name in ("0", "1", "9"):
        samples = [first[f"{name}_sample{k}"] for k in range(3)]
        assert not torch.equal(samples[0], samples[1]) and not torch.equal(samples[1], samples[2])
        assert not torch.equal(first[f"{name}_sample0"], other[f"{name}_sample0"])
        assert samples[0].shape == (3, 64, 64)


def test_one_sample_keeps_the_input_name(run: Path, folders: tuple[Path, Path], tmp_path: Path) -> None:
    _, y = folders
    assert sorted(_translate(run, y, tmp_path / "one", "--to", "x")) == ["0", "1"]


def test_reference_codes_are_the_mean_of_the_target_specific_encoder(run: Path, folders: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    x, y = folders
    got = _translate(run, x, tmp_path / "ref", "--to", "y", "--reference", str(y))
    assert sorted(got) == sorted(f"{n}_ref_{r}" for n in ("0", "1", "9") for r in ("0", "1"))
    model, _ = load_run(run, torch.device("cpu"))
    with torch.no_grad():
        ref = to_unit_range(load_resized(y / "1.png", 64)).unsqueeze(0)
        code = model.y.specific(ref)[0]
        image = to_unit_range(load_resized(x / "9.png", 64)).unsqueeze(0)
        want = model.y.generator(model.x.invariant(image), code)[0]
    want = want.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    assert (got["9_ref_1"].int() - want.int()).abs().max() <= 1
    assert not torch.equal(got["9_ref_0"], got["9_ref_1"])


def test_translate_without_a_run_is_one_line(folders: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    x, _ = folders
    (tmp_path / "norun").mkdir()
    argv = ["one-to-many", "translate", "--run", str(tmp_path / "norun"), "--images", str(x), "--to", "y",
            "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint" in err
    both = [*argv, "--samples", "2", "--reference", str(x)]
    assert main(both) == 2
    assert "not both" in capsys.readouterr().err


def test_a_checkpoint_of_other_networks_is_one_line(run: Path, folders: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["model"]["x.specific.convs.99.weight"] = state["model"].pop("x.specific.convs.0.weight")
    torch.save(state, path)
    argv = ["one-to-many", "translate", "--run", str(run), "--images", str(folders[0]), "--to", "y",
            "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another layout" in err
