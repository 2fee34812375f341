"""One vocabulary across every command, read from the parsers and their --help text.

``--images`` = generated (candidate) images, ``--real`` = real images, ``--labels`` = label maps only,
``--names`` = names of image sets, ``--batch-size``, and ``--quiet`` on every command that shows a
progress bar -- where it silences every bar.  The old spellings are hidden aliases for one release.
"""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import pytest
import torch

from p2p_eval.cli import build_parser, main
from p2p_eval.imageio import write_png

#: Leaf commands that show a progress bar (they must accept --quiet) and those that show none.
WITH_BARS = {"demo", "data synth", "data prepare-cityscapes", "data prepare-colorization", "data halves", "train", "translate", "segmenter train", "color",
             "fcn-score", "metrics", "ablate", "study simulate", "study power",
             "one-to-many train", "one-to-many translate"}
WITHOUT_BARS = {"segmenter export", "segmenter info", "study create", "study serve", "study report", "study list",
                "study close", "study token", "study quick"}
#: (command, old spelling, new spelling, dest, value given, value parsed)
ALIASES = [
    ("color", "--fake", "--images", "images", "a", [Path("a")]),
    ("color", "--labels", "--names", "names", "x", "x"),
    ("metrics", "--fake", "--images", "images", "a", [Path("a")]),
    ("metrics", "--labels", "--names", "names", "x", "x"),
    ("train", "--batch", "--batch-size", "batch_size", "4", 4),
    ("study create", "--fake", "--images", "images", "alg=d", ["alg=d"]),
]
#: The minimal other arguments each aliased command needs to parse.
REQUIRED = {"color": ["--real", "r"], "metrics": ["--real", "r"],
            "train": ["--generator", "g", "--data", "d", "--out", "o"], "study create": ["--db", "x.db"]}


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_commands() -> dict[str, argparse.ArgumentParser]:
    """Every runnable command ("data synth", "train", ...) and its parser."""
    leaves: dict[str, argparse.ArgumentParser] = {}
    todo = list(_children(build_parser()).items())
    while todo:
        name, parser = todo.pop()
        kids = _children(parser)
        if kids:
            todo += [(f"{name} {k}", p) for k, p in kids.items()]
        else:
            leaves[name] = parser
    return leaves


LEAVES = leaf_commands()


def visible_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Option string -> action, for the options that --help shows."""
    return {o: a for a in parser._actions if a.help is not argparse.SUPPRESS for o in a.option_strings}


def test_every_command_is_classified() -> None:
    assert set(LEAVES) == WITH_BARS | WITHOUT_BARS, "classify a new command: does it show a progress bar?"


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_help_speaks_one_vocabulary(name: str) -> None:
    parser = LEAVES[name]
    text = parser.format_help()
    options = visible_options(parser)
    assert not re.search(r"--fake\b", text), f"{name}: generated images are --images"
    assert not re.search(r"--batch\b(?!-)", text), f"{name}: --batch-size, not --batch"
    if "--labels" in options:  # label maps only, never the names of image sets
        assert re.search(r"label maps?", options["--labels"].help), f"{name}: --labels means label maps"
    if "--real" in options:
        assert "real" in (options["--real"].help or "")


@pytest.mark.parametrize("name", sorted(WITH_BARS))
def test_commands_with_bars_accept_quiet(name: str) -> None:
    options = visible_options(LEAVES[name])
    assert "--quiet" in options, f"{name} shows a progress bar but has no --quiet"
    assert options["--quiet"].dest == "quiet" and options["--quiet"].nargs == 0


@pytest.mark.parametrize(("name", "old", "new", "dest", "given", "parsed"), ALIASES)
def test_old_spellings_parse_to_the_new_dest(name: str, old: str, new: str, dest: str, given: str, parsed: object,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert old not in visible_options(LEAVES[name]) and new in visible_options(LEAVES[name])
    argv = [*name.split(), *REQUIRED[name], *(["--images", "a"] if dest == "names" else [])]
    args_new = build_parser().parse_args([*argv, new, given])
    assert capsys.readouterr().err == ""
    args_old = build_parser().parse_args([*argv, old, given, *([old, given] if isinstance(parsed, list) else [])])
    expected = parsed * 2 if isinstance(parsed, list) else parsed  # repeatable options keep appending
    assert getattr(args_old, dest) == expected and getattr(args_new, dest) == parsed
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and old in err[0] and f"use {new}" in err[0]  # one note, even when repeated


def test_mixing_old_and_new_spelling_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["color", "--real", "r", "--images", "a", "--fake", "b"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["color", "--real", "r"])
    assert "--images is required" in capsys.readouterr().err


def _images(folder: Path, count: int, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    for i in range(count):
        write_png(folder / f"{i}.png", torch.randint(0, 256, (3, 16, 16), generator=g, dtype=torch.uint8))
    return folder


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, where progress bars are drawn unless --quiet."""

    def isatty(self) -> bool:
        return True


def test_quiet_silences_every_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Real runs on a terminal: with --quiet nothing reaches stderr; without it the bars do (so the check can
    fail). On a stderr that is not a terminal (a log, a pipe, pytest's capture) no bar is drawn at all."""
    real, fake = _images(tmp_path / "real", 3, 0), _images(tmp_path / "fake", 3, 1)
    runs = [["data", "synth", "--out", str(tmp_path / "synth"), "--count", "2", "--size", "32"],
            ["color", "--real", str(real), "--images", str(fake), "--batch-size", "1"],
            ["metrics", "--real", str(real), "--images", str(fake), "--batch-size", "1", "--device", "cpu"]]
    assert main(runs[1]) == 0
    assert capsys.readouterr().err == ""  # captured: not a terminal, no bar
    for argv in runs:
        terminal = _Terminal()
        monkeypatch.setattr("sys.stderr", terminal)
        assert main([*argv, "--quiet"]) == 0
        monkeypatch.undo()
        assert terminal.getvalue() == "", argv[0]
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(runs[1]) == 0
    monkeypatch.undo()
    assert "Lab real" in terminal.getvalue()


@pytest.mark.parametrize(("argv", "target"), [
    (["translate", "--run", "r", "--data", "d", "--out", "o"], "p2p_eval.translate.translate_run"),
    (["train", "--generator", "l1", "--data", "d", "--out", "o"], "p2p_eval.train.trainer.train"),
    (["data", "prepare-cityscapes", "--root", "r", "--out", "o"], "p2p_eval.data.cityscapes.prepare_cityscapes"),
])
def test_quiet_reaches_the_library(argv: list[str], target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands too slow to run here pass ``progress=not --quiet`` to the function that draws the bars."""
    seen: list[bool] = []

    def fake(*args: object, progress: bool = True, **kwargs: object) -> object:
        seen.append(progress)
        return Path("run") if "train" in target else {} if "cityscapes" in target else []

    monkeypatch.setattr(target, fake)
    monkeypatch.setattr("p2p_eval.config.load_generator", lambda *args, **kwargs: None)  # train's variant file
    assert main([*argv, "--quiet"]) == 0 and main(argv) == 0
    assert seen == [False, True]
