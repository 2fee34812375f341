"""Output paths checked before any work starts: writable, of the right kind, never inside the command's inputs.

Every command that writes declares its output options (a folder or a file) and the input paths it reads;
:func:`check_outputs` runs before the command's work, so a bad output path costs one line, not an hour of
training, and no command can write over the data it reads.  Rules:

- an output must not be one of the inputs, lie inside an input folder, or contain an input;
- a folder output that already holds files needs ``--overwrite`` (where the command offers it), except a folder
  the command keeps up itself (a run or runs folder, resumed from what it holds);
- a folder output must not be an existing file, a file output must not be an existing folder;
- the nearest existing folder above the output must accept a new file (probed by creating one, so it also
  holds for root on a read-only file system, where permission bits say nothing).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from p2p_eval.errors import UserError


@dataclass(frozen=True)
class Output:
    """One output option: its flag as the user types it, the path given, whether it is a folder, and whether the
    folder must be fresh (empty or new unless ``--overwrite``) or is one the command keeps up and resumes."""

    flag: str
    path: Path
    is_dir: bool
    fresh: bool = True


def _overlap(out: Path, inp: Path) -> bool:
    """True when ``out`` is ``inp``, lies inside it, or contains it (both resolved)."""
    return out == inp or inp in out.parents or out in inp.parents


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _probe_writable(flag: str, path: Path, is_dir: bool) -> None:
    """Raise a UserError unless a new file can be created in the folder that will hold ``path``."""
    base = _nearest_existing(path if is_dir else path.parent)
    if not base.is_dir():
        raise UserError(f"{flag} {path}: {base} is a file, so nothing can be created below it; choose another path")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write in {base} ({exc.strerror or exc}); "
                        "choose a writable location") from None


def check_output(output: Output, inputs: Iterable[Path] = (), overwrite: bool = False) -> None:
    """Raise a one-line UserError when ``output`` may not or cannot be written (see the module's rules)."""
    flag, path = output.flag, output.path
    resolved = path.expanduser().resolve()
    for inp in inputs:
        if _overlap(resolved, Path(inp).expanduser().resolve()):
            raise UserError(f"{flag} {path} overlaps the input {inp}: the command would write over what it reads; "
                            "choose an output outside the inputs")
    if output.is_dir:
        if path.exists() and not path.is_dir():
            raise UserError(f"{flag} {path} is a file; {flag} needs a folder")
        if path.is_dir() and output.fresh and not overwrite:
            held = sum(1 for _ in path.iterdir())
            if held:
                raise UserError(f"{flag} {path} already holds {held} entries; choose an empty or new folder, "
                                "or pass --overwrite to write over them")
    elif path.is_dir():
        raise UserError(f"{flag} {path} is a folder; {flag} needs a file name")
    _probe_writable(flag, path, output.is_dir)


def check_outputs(outputs: Iterable[Output], inputs: Iterable[Path | None] = (), overwrite: bool = False) -> None:
    """:func:`check_output` for every output that was given (``path`` not None)."""
    inputs = [Path(p) for p in inputs if p is not None]
    for out in outputs:
        if out.path is not None:
            check_output(out, inputs, overwrite)


def declare(parser, *, folders: Iterable[str] = (), files: Iterable[str] = (), kept: Iterable[str] = (),
            inputs: Iterable[str] = ()) -> None:
    """Mark options of ``parser`` (by dest) as fresh output folders, output files, folders the command keeps up
    (runs it resumes) and inputs, for :func:`check_args`.

    The CLI checks every declared output before it calls the command, and the table-driven test in
    ``tests/test_bad_input.py`` finds every declared output of every command the same way.
    """
    shown = {a.dest: (max(a.option_strings, key=len) if a.option_strings else a.dest.upper())
             for a in parser._actions}
    outputs = [(d, True, True) for d in folders] + [(d, False, True) for d in files] + [(d, True, False) for d in kept]
    parser.set_defaults(declared_outputs=tuple((shown[d], d, is_dir, fresh) for d, is_dir, fresh in outputs),
                        declared_inputs=tuple(inputs))


def _paths(value: object) -> list[Path]:
    """The paths in an option's value: a path, a list of them (repeated options), or ``NAME=DIR`` strings."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [Path(str(v).split("=", 1)[-1]) for v in values if v is not None]


def check_args(args) -> None:
    """Check the outputs declared with :func:`declare` against the inputs given on the command line."""
    outputs = [Output(flag, getattr(args, dest), is_dir, fresh)
               for flag, dest, is_dir, fresh in getattr(args, "declared_outputs", ())]
    inputs = [p for d in getattr(args, "declared_inputs", ()) for p in _paths(getattr(args, d, None))]
    check_outputs(outputs, inputs, overwrite=bool(getattr(args, "overwrite", False)))
