"""Files: crash-safe writing (every write goes to a temp file in the same folder, then ``os.replace``), JSON
reading that tolerates a damaged marker, and the sha256 of a file's bytes."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from p2p_eval.errors import UserError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader sees either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise disk_full(path, len(data)) from None
        raise
    return path


def append_line(path: str | Path, line: str) -> None:
    """Append one line to a log (a line cut short by a kill or a full disk is dropped by its reader)."""
    path = Path(path)
    try:
        with path.open("a") as fh:
            fh.write(line + "\n")
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full(path, len(line) + 1) from None
        raise


def disk_full(path: Path, needed: int) -> UserError:
    """The one-line error for a write that ran out of space: what was written, what it needs, what is free."""
    free = shutil.disk_usage(path.parent).free
    return UserError(f"disk full while writing {path} ({needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free); "
                     "free some space and run the command again (with --resume where it offers one: finished work "
                     "is kept)")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomic text write (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN written as null-safe ``NaN`` is avoided by callers)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json_or(path: str | Path, default: Any) -> Any:
    """The JSON in ``path``, or ``default`` when the file is missing or damaged (a marker killed mid-write)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through a temp file + os.replace, so a killed process leaves a loadable file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, as ``sha256sum FILE`` prints it (the segmenter's and the data's fingerprints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def torch_load(path: str | Path, what: str, fix: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a file it cannot read is one UserError line naming the
    file, ``what`` it should be and the ``fix``, never torch's own advice (which suggests ``weights_only=False``,
    i.e. running code from the file)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}; {fix}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise UserError(f"{path} is not a readable {what} ({type(exc).__name__}: a damaged file or a file of another "
                        f"kind); {fix}") from None
