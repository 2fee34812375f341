"""Argument helpers shared by the command modules (:mod:`p2p_eval.commands`).

They sit below both the command modules and :mod:`p2p_eval.cli` (which imports the commands), so no
command module imports the CLI.  ``--quiet`` goes on every command that shows a progress bar
(:func:`add_quiet`); an old option spelling stays as a hidden alias for one release
(:func:`add_deprecated`) and prints a one-line note on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


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
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
