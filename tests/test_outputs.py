"""Output paths are checked before the work: no output over an input, no silent overwrite, the right kind, writable."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from p2p_eval.errors import UserError
from p2p_eval.outputs import Output, check_args, check_outputs, declare


def _check(out: Path, is_dir: bool = True, inputs=(), overwrite: bool = False) -> None:
    check_outputs([Output("--out", out, is_dir)], inputs, overwrite)


def test_a_new_folder_and_an_empty_folder_are_fine(tmp_path: Path) -> None:
    _check(tmp_path / "new" / "deeper")
    (tmp_path / "empty").mkdir()
    _check(tmp_path / "empty")
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.parametrize("where", ["same", "inside", "above"])
def test_an_output_overlapping_an_input_is_refused_even_with_overwrite(tmp_path: Path, where: str) -> None:
    data = tmp_path / "data" / "val"
    data.mkdir(parents=True)
    (data / "1.jpg").write_bytes(b"x")
    out = {"same": data, "inside": data / "out", "above": tmp_path / "data"}[where]
    with pytest.raises(UserError, match="overlaps the input"):
        _check(out, inputs=[data], overwrite=True)
    assert (data / "1.jpg").read_bytes() == b"x"


def test_a_folder_holding_files_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"")
    (tmp_path / "out" / "b.png").write_bytes(b"")
    with pytest.raises(UserError, match="already holds 2 entries.*--overwrite"):
        _check(tmp_path / "out")
    _check(tmp_path / "out", overwrite=True)


def test_kinds_are_checked(tmp_path: Path) -> None:
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(UserError, match="is a file; --out needs a folder"):
        _check(tmp_path / "file.json")
    with pytest.raises(UserError, match="is a folder; --out needs a file name"):
        _check(tmp_path, is_dir=False)
    with pytest.raises(UserError, match="is a file, so nothing can be created below it"):
        _check(tmp_path / "file.json" / "x.json", is_dir=False)


def test_an_unwritable_place_is_refused_even_for_root() -> None:
    # /proc accepts no new files, whatever the user (CI runs as root, where permission bits say nothing)
    with pytest.raises(UserError, match="cannot write in /proc"):
        check_outputs([Output("--json", Path("/proc/p2p_eval_out.json"), False)])


def test_check_args_reads_the_declared_options(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=Path, action="append")
    parser.add_argument("--save-predictions", type=Path)
    parser.add_argument("--json", type=Path)
    declare(parser, folders=["save_predictions"], files=["json"], inputs=["images"])
    images = tmp_path / "gen"
    images.mkdir()
    args = parser.parse_args(["--images", str(tmp_path / "other"), "--images", str(images),
                              "--save-predictions", str(images)])
    with pytest.raises(UserError, match=r"--save-predictions .* overlaps the input"):
        check_args(args)
    args = parser.parse_args(["--images", str(images), "--json", str(images / "scores.json")])
    with pytest.raises(UserError, match=r"--json .* overlaps the input"):
        check_args(args)
    check_args(parser.parse_args(["--images", str(images), "--json", str(tmp_path / "scores.json")]))
