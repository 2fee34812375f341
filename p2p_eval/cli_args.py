"""Argument helpers shared by the command modules (:mod:`p2p_eval.commands`).

They sit below both the command modules and :mod:`p2p_eval.cli` (which imports the commands), so no
command module imports the CLI.  ``--quiet`` goes on every command that shows a progress bar
(:func:`add_quiet`); an old option spelling stays as a hidden alias for one release
(:func:`add_deprecated`) and prints a one-line note on stderr.  Numbers are checked while parsing
(:func:`positive_int` and its siblings), and a usage error is one line (:class:`OneLineParser`).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """A parser whose usage errors are one line on stderr and exit 2, like the commands' own errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, text: str, low: float | None, high: float | None, want: str, open_low: bool = False):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {want}") from None
    inside = math.isfinite(value) and (low is None or value > low or (value == low and not open_low)) \
        and (high is None or value <= high)
    if not inside:
        raise argparse.ArgumentTypeError(f"{text} is out of range: give {want}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (batch sizes, image sizes, counts, epochs, steps)."""
    return _number(int, text, 1, None, "an integer >= 1")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (worker processes, where 0 means none; bootstrap draws, 0 = none)."""
    return _number(int, text, 0, None, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (learning rates, scales)."""
    return _number(float, text, 0, None, "a number > 0", open_low=True)


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (spreads, standard deviations)."""
    return _number(float, text, 0, None, "a number >= 0")


def probability(text: str) -> float:
    """argparse type: a number in [0, 1] (shares, lapse rates)."""
    return _number(float, text, 0, 1, "a number from 0 to 1")


def port(text: str) -> int:
    """argparse type: a TCP port, 1..65535."""
    return _number(int, text, 1, 65535, "a port number from 1 to 65535")


class _Deprecated(argparse.Action):
    """A hidden old spelling: stores (or appends) into the new option's dest and notes the rename on stderr."""

    def __init__(self, option_strings: list[str], dest: str, new: str, append: bool = False, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new, self.append, self.noted = new, append, False

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if not self.noted:
            self.noted = True
            print(f"p2p-eval: {option_string} is deprecated and will be removed in the next release; use {self.new}",
                  file=sys.stderr)
        if self.append:
            values = [*(getattr(namespace, self.dest) or []), values]
        setattr(namespace, self.dest, values)


def add_deprecated(container: Any, old: str, new: str, dest: str, append: bool = False, **kwargs: Any) -> None:
    """Keep ``old`` working as a hidden alias of ``new`` (same ``dest``; ``append`` for repeatable options).

    ``container`` is a parser or an argument group; ``kwargs`` (``type``, ``metavar``) match the new option.
    """
    container.add_argument(old, dest=dest, action=_Deprecated, new=new, append=append, help=argparse.SUPPRESS,
                           **kwargs)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars (the command passes ``progress=not args.quiet`` down)."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars (without it they are drawn only when "
                        "stderr is a terminal)")
