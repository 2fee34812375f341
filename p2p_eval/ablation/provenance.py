"""What made a run: a digest of the code that trains and translates, the package version and git commit, and
a fingerprint of the data's content (the design card's "Provenance").

- :func:`code_digest`: sha256 over the sorted ``(relative path, sha256 of the file's bytes)`` of
  :data:`CODE_FILES`, the sources whose change can change a trained generator or its translations. Per-file
  digests are kept too, so a stale run can name the files that changed.
- :func:`score_code_digest`: the same over :data:`SCORE_FILES` (how a folder of images becomes an FCN-score);
  a cached score made by other scoring code is recomputed.
- :func:`data_fingerprint`: sha256 over the sorted ``(relative path, size, sha256 of the bytes)`` of every
  non-hidden file in the data folder's :data:`DATA_FOLDERS`; file hashes are cached by
  ``(relative path, size, mtime_ns)`` in a small JSON file, so a rerun on 3000 unchanged files only stats them.
- :func:`git_commit` (``git describe --always --dirty``) and :func:`package_version` are recorded for the
  report; they never fail (None when unknown) and do not decide staleness: the digests do.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from p2p_eval.errors import UserError
from p2p_eval.fsutil import file_sha256, write_json

#: The installed package folder (``p2p_eval/``); :data:`CODE_FILES` are relative to it.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Sources that affect training and translation (a folder means every ``*.py`` below it): the generators and
#: discriminators, objectives and training loop, checkpoints and test-time mode, inference, the aligned data
#: set and its jitter, the config (defaults, resolution), image decoding / encoding, device selection.
CODE_FILES: tuple[str, ...] = ("models", "train", "translate.py", "data/aligned.py", "data/transforms.py", "config.py",
                               "imageio.py", "device.py")
#: Sources that turn a folder of images into an FCN-score (segmenter loading and prediction, label reading and
#: resizing, the confusion matrix and scores).
SCORE_FILES: tuple[str, ...] = ("metrics/fcn_score.py", "segmentation/data.py", "segmentation/model.py",
                                "confusion.py", "data/cityscapes.py", "imageio.py")
#: Sources that turn a folder of generated colour label maps into Table 6's scores.
LABEL_SCORE_FILES: tuple[str, ...] = ("metrics/labelmap.py", "confusion.py", "metrics/bootstrap.py",
                                      "data/cityscapes.py", "imageio.py")
#: Sources that turn a folder of generated photos into the image-metric table's scores.
IMAGE_SCORE_FILES: tuple[str, ...] = ("ablation/scoring.py", "metrics/image.py", "metrics/color.py",
                                      "metrics/lpips.py", "metrics/bootstrap.py", "imageio.py")
#: Sub-folders of an AB data folder whose files make up its fingerprint.
DATA_FOLDERS: tuple[str, ...] = ("train", "val", "train_labels", "val_labels")
PROVENANCE_FILE = "provenance.json"
FORMAT = "p2p-eval-provenance/1"


def source_files(entries: Iterable[str], root: Path = PACKAGE_DIR) -> list[Path]:
    """The files of ``entries`` under ``root`` (a folder: its ``*.py`` files, recursively), sorted, unique."""
    files: set[Path] = set()
    for entry in entries:
        path = root / entry
        if path.is_dir():
            files.update(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.is_file():
            files.add(path)
    return sorted(files)


def files_digest(files: Sequence[Path], root: Path) -> dict[str, Any]:
    """``{"digest": sha256 of the lines "<relative posix path> <sha256>\\n" in sorted path order,
    "files": {path: sha256}}``."""
    per_file = {p.relative_to(root).as_posix(): file_sha256(p) for p in files}
    text = "".join(f"{name} {sha}\n" for name, sha in sorted(per_file.items()))
    return {"digest": hashlib.sha256(text.encode("utf-8")).hexdigest(), "files": per_file}


def code_digest(entries: Iterable[str] | None = None, root: Path | None = None) -> dict[str, Any]:
    """Digest of the training and translation sources (default :data:`CODE_FILES` under :data:`PACKAGE_DIR`,
    read when called), see :func:`files_digest`."""
    root = PACKAGE_DIR if root is None else Path(root)
    return files_digest(source_files(CODE_FILES if entries is None else entries, root), root)


def score_code_digest(entries: Iterable[str] | None = None, root: Path | None = None) -> str:
    """Digest of the FCN-scoring sources (default :data:`SCORE_FILES` under :data:`PACKAGE_DIR`)."""
    root = PACKAGE_DIR if root is None else Path(root)
    return files_digest(source_files(SCORE_FILES if entries is None else entries, root), root)["digest"]


def package_version() -> str | None:
    """The installed p2p-eval version (``importlib.metadata``), None when not installed."""
    try:
        return version("p2p-eval")
    except PackageNotFoundError:
        return None


def git_commit(root: Path = PACKAGE_DIR.parent) -> str | None:
    """``git describe --always --dirty --abbrev=12`` when ``root`` is a git checkout, else None (never raises)."""
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _data_files(data_dir: Path) -> list[Path]:
    files = []
    for folder in DATA_FOLDERS:
        base = data_dir / folder
        if base.is_dir():
            files += [p for p in base.rglob("*") if p.is_file()
                      and not any(part.startswith(".") for part in p.relative_to(data_dir).parts)]
    return sorted(files)


def _read_cache(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache is only a cache: rebuilt from the files
    return data if isinstance(data, dict) else {}


def data_fingerprint(data_dir: str | Path, cache: str | Path | None = None) -> dict[str, Any]:
    """``{"fingerprint", "files", "bytes"}`` of the content of ``data_dir``'s :data:`DATA_FOLDERS` (not its path).

    ``fingerprint`` = sha256 of the lines ``"<relative posix path> <size> <sha256>\\n"`` in sorted path order.
    ``cache``: a JSON file of ``{resolved data folder: {relative path: [size, mtime_ns, sha256]}}``; a file
    whose size and mtime_ns are unchanged is not read again.
    """
    data_dir = Path(data_dir)
    root = str(data_dir.resolve())
    cache_path = None if cache is None else Path(cache)
    store = _read_cache(cache_path)
    known = store.get(root, {}) if isinstance(store.get(root), dict) else {}
    entries: dict[str, list] = {}
    lines = []
    total = 0
    for path in _data_files(data_dir):
        name = path.relative_to(data_dir).as_posix()
        st = path.stat()
        hit = known.get(name)
        if isinstance(hit, list) and len(hit) == 3 and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            sha = str(hit[2])
        else:
            sha = file_sha256(path)
        entries[name] = [st.st_size, st.st_mtime_ns, sha]
        lines.append(f"{name} {st.st_size} {sha}\n")
        total += st.st_size
    if cache_path is not None and entries != known:
        store[root] = entries
        write_json(cache_path, store)
    return {"fingerprint": hashlib.sha256("".join(lines).encode("utf-8")).hexdigest(), "files": len(lines),
            "bytes": total}


def current(data_dir: str | Path, cache: str | Path | None = None) -> dict[str, Any]:
    """The provenance a run started now would record: code digest (+ files), version, commit, data fingerprint."""
    code = code_digest()
    return {"format": FORMAT, "code_digest": code["digest"], "code_files": code["files"],
            "version": package_version(), "git": git_commit(), "data": data_fingerprint(data_dir, cache)}


def read(run: str | Path) -> dict[str, Any] | None:
    """The ``provenance.json`` of a run folder, None when it has none; a damaged file is a UserError."""
    path = Path(run) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc}); delete it to mark the run as of unknown provenance, "
                        "or move the run folder aside") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "code_digest" not in data:
        raise UserError(f"{path} is not a p2p-eval provenance record; delete it or move the run folder aside")
    return data


def write(run: str | Path, record: dict[str, Any]) -> Path:
    """Write ``RUN/provenance.json`` (atomically)."""
    return write_json(Path(run) / PROVENANCE_FILE, record)


def stale_reasons(recorded: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """Why a run recorded as ``recorded`` is not current under ``now`` (empty list: it is current)."""
    if recorded is None:
        return [f"no {PROVENANCE_FILE} (made before p2p-eval recorded provenance)"]
    reasons = []
    if recorded.get("code_digest") != now["code_digest"]:
        old, new = recorded.get("code_files") or {}, now["code_files"]
        changed = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        reasons.append(f"code changed since it was made ({shown or 'digest differs'}; made at "
                       f"{recorded.get('git') or 'no git commit'})")
    if (recorded.get("data") or {}).get("fingerprint") != now["data"]["fingerprint"]:
        reasons.append("data content changed since it was made")
    return reasons


def short(digest: str | None, n: int = 12) -> str:
    """The first ``n`` hex digits of a digest ("unknown" for None)."""
    return "unknown" if not digest else digest[:n]
