"""Provenance pieces against hashlib: the code digest, the data fingerprint and its cache, git, staleness."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from p2p_eval.ablation import provenance
from p2p_eval.errors import UserError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_code_digest_is_sha256_over_sorted_file_hashes(tmp_path: Path) -> None:
    files = {"train/loop.py": b"x = 1\n", "train/sub/deep.py": b"y = 2\n", "config.py": b"z = 3\n",
             "train/notes.txt": b"not python", "other.py": b"not listed"}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    got = provenance.code_digest(["train", "config.py", "missing.py"], tmp_path)
    listed = ["config.py", "train/loop.py", "train/sub/deep.py"]
    expected = _sha("".join(f"{n} {_sha(files[n])}\n" for n in listed).encode())
    assert got == {"digest": expected, "files": {n: _sha(files[n]) for n in listed}}
    (tmp_path / "train/loop.py").write_bytes(b"x = 2\n")
    assert provenance.code_digest(["train", "config.py"], tmp_path)["digest"] != expected


def test_code_digest_of_the_package_covers_training_and_translation() -> None:
    got = provenance.code_digest()
    for name in ("train/trainer.py", "train/loop.py", "models/unet.py", "models/patchgan.py", "translate.py",
                 "data/aligned.py", "data/transforms.py", "config.py"):
        assert got["files"][name] == _sha((provenance.PACKAGE_DIR / name).read_bytes()), name
    assert "metrics/color.py" not in got["files"] and "ablation/report.py" not in got["files"]


def _data(root: Path) -> dict[str, bytes]:
    files = {"train/1.png": b"\x89PNG one", "train/2.png": b"\x89PNG two!", "val/1.png": b"val",
             "val_labels/1.png": b"label", "notes/readme.txt": b"outside the data folders", "train/.hidden": b"h"}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_data_fingerprint_hashes_content_not_path(tmp_path: Path) -> None:
    files = _data(tmp_path / "a")
    listed = ["train/1.png", "train/2.png", "val/1.png", "val_labels/1.png"]
    expected = _sha("".join(f"{n} {len(files[n])} {_sha(files[n])}\n" for n in listed).encode())
    got = provenance.data_fingerprint(tmp_path / "a")
    assert got == {"fingerprint": expected, "files": 4, "bytes": sum(len(files[n]) for n in listed)}
    _data(tmp_path / "b")  # same content elsewhere: same fingerprint
    assert provenance.data_fingerprint(tmp_path / "b")["fingerprint"] == expected
    (tmp_path / "b" / "val" / "1.png").write_bytes(b"VAL")  # same size, other bytes
    assert provenance.data_fingerprint(tmp_path / "b")["fingerprint"] != expected


def test_data_fingerprint_cache_by_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _data(tmp_path / "d")
    cache = tmp_path / "cache.json"
    first = provenance.data_fingerprint(tmp_path / "d", cache)
    hashed: list[str] = []
    real = provenance.file_sha256
    monkeypatch.setattr(provenance, "file_sha256", lambda p: hashed.append(Path(p).name) or real(p))
    assert provenance.data_fingerprint(tmp_path / "d", cache) == first and hashed == []  # all from the cache
    target = tmp_path / "d" / "train" / "2.png"
    st = target.stat()
    target.write_bytes(b"\x89PNG TWO!")  # same size; the mtime moves
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second = provenance.data_fingerprint(tmp_path / "d", cache)
    assert hashed == ["2.png"] and second["fingerprint"] != first["fingerprint"]
    cache.write_text("{ damaged")  # a broken cache is rebuilt, not an error
    assert provenance.data_fingerprint(tmp_path / "d", cache) == second


def test_git_commit_never_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert provenance.git_commit(tmp_path) is None  # not a checkout
    (tmp_path / ".git").mkdir()
    assert provenance.git_commit(tmp_path) is None  # an empty .git: git fails
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert provenance.git_commit(provenance.PACKAGE_DIR.parent) is None


def test_stale_reasons_and_damaged_record(tmp_path: Path) -> None:
    now = {"code_digest": "c2", "code_files": {"train/loop.py": "b", "config.py": "x"}, "git": "abc",
           "data": {"fingerprint": "d1"}}
    same = {**now, "format": provenance.FORMAT}
    assert provenance.stale_reasons(same, now) == []
    old = {**same, "code_digest": "c1", "code_files": {"train/loop.py": "a", "config.py": "x"}, "git": "old123"}
    (reason,) = provenance.stale_reasons(old, now)
    assert "train/loop.py" in reason and "config.py" not in reason and "old123" in reason
    assert provenance.stale_reasons({**same, "data": {"fingerprint": "d0"}}, now) == \
        ["data content changed since it was made"]
    assert "no provenance.json" in provenance.stale_reasons(None, now)[0]
    (tmp_path / "provenance.json").write_text("{ not json")
    with pytest.raises(UserError, match="provenance.json"):
        provenance.read(tmp_path)
