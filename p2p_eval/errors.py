"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (missing folder, unreadable image, unknown
name, wrong size).  The CLI prints its message on one line and exits with status 2; the
traceback is shown only with ``--debug``.  Library code raises it; it never calls ``sys.exit``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """An error caused by user input; the message names the file and says how to fix it."""


def require_dir(path: str | Path, what: str = "folder") -> Path:
    """Return ``path`` as a Path, or raise UserError if it is not an existing directory."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} not found: {p} (check the path)")
    if not p.is_dir():
        raise UserError(f"{what} is not a folder: {p}")
    return p


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise UserError if it is not an existing file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {p} (check the path)")
    return p


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """The error for a name missing from a registry; it lists the valid names."""
    return UserError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")


def file_list(paths: Iterable[str | Path], limit: int = 10) -> str:
    """Format a list of file names for an error message, truncated after ``limit``."""
    items = [str(p) for p in paths]
    shown = ", ".join(items[:limit])
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return shown + more


def count(n: int, noun: str) -> str:
    """``1 image``, ``2 images``: a count with its noun in the right number (nouns that take an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
