"""Every command, fed each class of bad input, answers with exit 2 and one line on stderr, and changes no input.

The commands and their options are read from the parsers (as ``test_vocabulary`` does), so a command added later
is checked the same way: every number is checked while parsing, and every output a command declares
(``p2p_eval.outputs.declare``) is refused when it lies inside an input, is of the wrong kind, or cannot be written.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from p2p_eval import cli_args
from p2p_eval.cli import main
from p2p_eval.commands.ablate import unet_size
from p2p_eval.commands.segmenter import frame_size
from tests.test_vocabulary import LEAVES

#: Parse-time number checks and what each refuses.
CHECKED = {cli_args.positive_int: ["0", "-1", "x"], cli_args.nonnegative_int: ["-1", "1.5"],
           cli_args.positive_float: ["0", "-1", "nan", "inf"], cli_args.nonnegative_float: ["-0.5", "nan"],
           cli_args.probability: ["-0.1", "1.5", "nan"], cli_args.port: ["0", "70000"],
           frame_size: ["0", "x", "1024x0", "1024xq"], unet_size: ["1", "3", "96", "-8"]}
#: Values for the required options that are neither inputs nor outputs.
VALUES = {"generator": "l1_cgan", "preset": "smoke", "db": "sqlite:///study.db", "study": "s", "run": "run",
          "fooling": "0.3,0.4", "participants": "3", "half": "A",
          "to": "y"}
#: Options a command needs beyond its required ones to parse (a required choice of two).
EXTRA = {"fcn-score": {"images": "{in}/images", "labels": "{in}/labels"}, "color": {"images": "{in}/images"},
         "metrics": {"images": "{in}/images"}}


def _number_actions() -> list[tuple[str, str, argparse.Action]]:
    return [(name, max(a.option_strings, key=len), a) for name, parser in sorted(LEAVES.items())
            for a in parser._actions if a.option_strings and a.type in CHECKED]


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks exit from parse_args
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, f"{argv}: exit {code}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, f"{argv}: {err}"
    return err


def test_every_number_option_is_checked_while_parsing() -> None:
    loose = [f"{name} {max(a.option_strings, key=len)}" for name, parser in LEAVES.items() for a in parser._actions
             if a.type in (int, float) and a.dest != "seed"]
    assert loose == [], "give these options a checked type from p2p_eval.cli_args"


@pytest.mark.parametrize("name,flag,action", _number_actions(), ids=lambda v: v if isinstance(v, str) else "")
def test_out_of_range_numbers_are_one_line(name: str, flag: str, action: argparse.Action,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for bad in CHECKED[action.type]:
        err = _one_line_exit_2([*name.split(), f"{flag}={bad}"], capsys)
        assert flag in err


def _declared(name: str) -> tuple[tuple, tuple]:
    defaults = LEAVES[name]._defaults
    return defaults.get("declared_outputs", ()), defaults.get("declared_inputs", ())


def _argv(name: str, root: Path, given: dict[str, str]) -> list[str]:
    """A command line that parses: required options get an input folder, an output path or a plain value."""
    outputs, inputs = _declared(name)
    out_dests = {dest for _, dest, _, _ in outputs}
    argv, positional = [*name.split()], []
    for action in LEAVES[name]._actions:
        dest = action.dest
        if action.help == argparse.SUPPRESS:  # a hidden old spelling of an option handled under its new name
            continue
        if dest in given:
            value = given[dest]
        elif not action.required:
            continue
        elif dest in inputs:
            value = str(root / "in" / dest)
        elif dest in out_dests:
            value = str(root / "out" / dest)
        else:
            value = VALUES[dest]
        if action.option_strings:
            argv += [max(action.option_strings, key=len), value]
        else:
            positional.append(value)
    extra = [(f"--{dest}", value.format(**{"in": root / "in"})) for dest, value in EXTRA.get(name, {}).items()
             if dest not in given]
    return argv + [item for pair in extra for item in pair] + positional


def _inputs(root: Path, name: str) -> dict[Path, str]:
    """Make every input folder (with a file in it) and return the checksums of everything under root/in."""
    for dest in [*_declared(name)[1], "images", "labels"]:
        (root / "in" / dest).mkdir(parents=True, exist_ok=True)
        (root / "in" / dest / "1.png").write_bytes(b"not really a png " + dest.encode())
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "in").rglob("*") if p.is_file()}


CASES = [(name, flag, dest, is_dir, fresh) for name in sorted(LEAVES)
         for flag, dest, is_dir, fresh in _declared(name)[0]]


@pytest.mark.parametrize("name,flag,dest,is_dir,fresh", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_bad_outputs_are_refused_before_the_work(name: str, flag: str, dest: str, is_dir: bool, fresh: bool,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _inputs(tmp_path, name)
    inputs = _declared(name)[1]
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    bad = {"unwritable": "/proc/p2p-eval-test/out", "wrong kind": str(tmp_path / ("a_file" if is_dir else "a_folder"))}
    if inputs:
        bad["inside an input"] = str(tmp_path / "in" / inputs[0] / ("sub" if is_dir else "x.json"))
    if is_dir and fresh:
        held = tmp_path / "held"
        held.mkdir()
        (held / "other.png").write_bytes(b"keep me")
        bad["holding other files"] = str(held)
    for case, value in bad.items():
        err = _one_line_exit_2(_argv(name, tmp_path, {dest: value}), capsys)
        assert flag in err, f"{case}: {err}"
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "in").rglob("*") if p.is_file()}
    assert after == before
    if is_dir and fresh:
        assert [p.name for p in held.iterdir()] == ["other.png"]


def _input_folders(name: str) -> list[str]:
    """The declared inputs of a command that are folders (a segmenter or checkpoint file is not)."""
    return [d for d in _declared(name)[1] if d not in ("segmenter", "checkpoint")]


def _fill(folder: Path, kind: str) -> None:
    """``missing``: nothing; ``empty``: an empty folder; ``corrupt``: a broken PNG at the top and in train/, val/."""
    if kind == "missing":
        return
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "corrupt":
        for sub in (folder, folder / "train", folder / "val"):
            sub.mkdir(exist_ok=True)
            (sub / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n but broken")


INPUT_CASES = [(name, dest, kind) for name in sorted(LEAVES) for dest in _input_folders(name)
               for kind in ("missing", "empty", "corrupt")]


@pytest.mark.parametrize("name,dest,kind", INPUT_CASES, ids=[" ".join(c) for c in INPUT_CASES])
def test_missing_empty_and_corrupt_inputs_are_one_line(name: str, dest: str, kind: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    good = {d: tmp_path / "good" / d for d in _input_folders(name)}
    for folder in good.values():
        _fill(folder, "corrupt")  # the other inputs exist (their own check may come first: any one line will do)
    bad = tmp_path / "bad" / dest
    _fill(bad, kind)
    given = {d: str(p) for d, p in good.items()} | {dest: str(bad)}
    if "images" in given and name in ("study create", "study quick"):
        given["images"] = ("gen=" if name == "study create" else "") + given["images"]
    argv = _argv(name, tmp_path, given)
    _one_line_exit_2(argv + ["--device", "cpu"] * ("--device" in LEAVES[name]._option_string_actions), capsys)


def test_a_size_too_small_for_ssim_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from p2p_eval.imageio import write_png

    for folder in ("real", "fake"):
        write_png(tmp_path / folder / "1.png", torch.full((3, 32, 32), 90, dtype=torch.uint8))
    argv = ["metrics", "--real", str(tmp_path / "real"), "--images", str(tmp_path / "fake"), "--device", "cpu"]
    err = _one_line_exit_2([*argv, "--size", "4"], capsys)
    assert "at least 11 pixels" in err and "--size" in err
