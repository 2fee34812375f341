"""Crash-safe files: a damaged or missing JSON marker reads as the default instead of a traceback."""

from __future__ import annotations

from pathlib import Path

from p2p_eval.fsutil import read_json_or, write_json


def test_read_json_or(tmp_path: Path) -> None:
    path = tmp_path / "marker.json"
    assert read_json_or(path, {}) == {}
    write_json(path, {"count": 3})
    assert read_json_or(path, {}) == {"count": 3}
    path.write_text('{"count": ')                      # killed mid-write by a non-atomic writer
    assert read_json_or(path, {"x": 1}) == {"x": 1}
    path.write_bytes(b"\xff\xfe")
    assert read_json_or(path, None) is None
