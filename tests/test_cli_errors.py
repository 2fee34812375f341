"""User errors on the command line: exit status 2, one line naming the path, a traceback only with --debug."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p_eval.cli import main


def test_missing_root_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "prepare-cityscapes", "--root", "/nonexistent", "--out", str(tmp_path / "X")])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "/nonexistent" in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "X").exists()


def test_debug_shows_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--debug", "data", "prepare-cityscapes", "--root", "/nonexistent", "--out", str(tmp_path / "X")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" in err and "UserError" in err
    assert "/nonexistent" in err.splitlines()[-1]


def test_study_serve_needs_a_server_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["study", "serve", "--db", str(tmp_path / "none.db"), "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--workers: '0'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_study_serve_workers_is_a_number_or_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["study", "serve", "--db", str(tmp_path / "none.db"), "--workers", "many"])
    err = capsys.readouterr().err
    assert code == 2 and "'many'" in err and "auto" in err and "Traceback" not in err


def test_study_serve_auto_workers_one_on_sqlite_two_on_a_server_database(monkeypatch) -> None:
    from p2p_eval.study.server import auto_workers

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert auto_workers("sqlite") == 1
    assert auto_workers("postgresql") == 2
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert auto_workers("postgresql") == 1


def test_a_corrupt_image_met_by_a_loader_worker_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from p2p_eval.imageio import write_png

    for split in ("train", "val"):
        for i in range(3):
            write_png(tmp_path / "d" / split / f"{i}.png", torch.full((3, 32, 64), 60 * i, dtype=torch.uint8))
    (tmp_path / "d" / "train" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code = main(["segmenter", "train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "seg.pt"), "--epochs", "1",
                 "--size", "32", "--device", "cpu", "--workers", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "1.png" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_study_create_names_the_flag_the_user_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["study", "create", "--db", db, "--name", "s", "--real", str(tmp_path), "--images", "gen"]) == 2
    err = capsys.readouterr().err
    assert "--images 'gen': write ALG=DIR" in err and "--fake" not in err


def test_study_serve_on_a_port_in_use_is_one_line_before_listening(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    import torch

    from p2p_eval.imageio import write_png

    for folder in ("real", "gen"):
        for i in range(4):
            write_png(tmp_path / folder / f"{i}.png", torch.full((3, 16, 16), 40 * i, dtype=torch.uint8))
    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["study", "create", "--db", db, "--name", "s", "--real", str(tmp_path / "real"),
                 "--images", f"gen={tmp_path / 'gen'}", "--trials", "2", "--practice", "0"]) == 0
    capsys.readouterr()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["study", "serve", "--db", db, "--host", "127.0.0.1", "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert "listening on" not in captured.out
    assert f"cannot listen on 127.0.0.1:{port}" in captured.err and len(captured.err.strip().splitlines()) == 1
