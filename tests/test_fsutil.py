"""Crash-safe files: a damaged or missing JSON marker reads as the default instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


def test_unreadable_torch_files_are_one_line_without_torchs_advice(tmp_path: Path) -> None:
    from p2p_eval.errors import UserError
    from p2p_eval.fsutil import torch_load
    from p2p_eval.train.checkpoint import load_checkpoint

    garbage = tmp_path / "last.pt"
    garbage.write_bytes(b"\x80\x04 not a pickle at all" * 10)
    with pytest.raises(UserError) as info:
        torch_load(garbage, "p2p-eval training checkpoint", "train the run first")
    message = str(info.value)
    assert str(garbage) in message and "weights_only" not in message and "\n" not in message
    other = tmp_path / "seg.pt"
    torch.save({"format": "segmenter", "state_dict": {}}, other)  # a loadable file of another kind
    with pytest.raises(UserError, match="is not a p2p-eval training checkpoint"):
        load_checkpoint(other)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
