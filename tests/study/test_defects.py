"""Defects found in a hand-run session, each reproduced and checked fixed: undecodable images (refused at
create, skipped at serve time), partial pairing, the CLI's help / serve / missing databases, and images served
only while their trial is open (no-store, re-views counted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from p2p_eval.errors import UserError
from p2p_eval.study.analysis import analyse, format_report
from p2p_eval.study.models import Image, Session, Study, Trial
from p2p_eval.study.plan import StudySpec, create_study
from p2p_eval.study.store import make_engine
from tests.study.loadgen import open_trial


def _copy_dirs(image_dirs: dict[str, Path], root: Path) -> dict[str, Path]:
    out = {}
    for name, folder in image_dirs.items():
        out[name] = root / name
        shutil.copytree(folder, out[name])
    return out


def _trials(engine: sa.Engine, token: str) -> list[Trial]:
    with OrmSession(engine) as db:
        sid = db.scalar(select(Session.id).where(Session.token == token))
        return list(db.scalars(select(Trial).where(Trial.session_id == sid).order_by(Trial.index)))


def test_create_refuses_undecodable_images_by_name(tmp_path, image_dirs) -> None:
    dirs = _copy_dirs(image_dirs, tmp_path)
    (dirs["alg_a"] / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = (dirs["alg_a"] / "4.png").read_bytes()
    (dirs["alg_a"] / "4.png").write_bytes(good[: len(good) // 2])  # truncated: the header reads, the pixels do not
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    spec = StudySpec(name="s", real=str(dirs["real"]), fake={"alg_a": str(dirs["alg_a"])}, trials=2, practice=0)
    with pytest.raises(UserError) as err:
        create_study(engine, spec)
    message = str(err.value)
    assert "\n" not in message and "2 image(s) cannot be decoded" in message
    assert "3.png" in message and "4.png" in message and str(dirs["alg_a"]) in message
    with OrmSession(engine) as db:
        assert db.scalar(select(sa.func.count(Study.id))) == 0, "nothing registered"
    engine.dispose()


def test_unservable_image_is_skipped_and_recorded(tmp_path, image_dirs, db_url) -> None:
    """An image that breaks after create: the trial is skipped (reason stored), the participant carries on,
    and a broken last trial ends the session with its completion code."""
    from fastapi.testclient import TestClient

    from p2p_eval.study.server import create_app

    dirs = _copy_dirs(image_dirs, tmp_path)
    engine = make_engine(db_url)
    create_study(engine, StudySpec(name="s", real=str(dirs["real"]), fake={"alg_a": str(dirs["alg_a"])},
                                   trials=4, practice=0, seed=1))
    with TestClient(create_app(engine)) as client:
        state = client.post("/api/studies/s/sessions", json={"PROLIFIC_PID": "p", "SESSION_ID": "x"}).json()
        token = state["session"]
        trials = _trials(engine, token)
        with OrmSession(engine) as db:
            files = {i.id: Path(i.path) for i in db.scalars(select(Image))}
        broken = {files[trials[1].img1_id], files[trials[3].img2_id]}
        used_elsewhere = {files[i] for t in (trials[0], trials[2]) for i in (t.img1_id, t.img2_id)}
        assert not broken & used_elsewhere, "the test needs trials 0 and 2 untouched"
        for path in broken:
            path.write_bytes(b"garbage")
        first = open_trial(client, token, 0).json()
        assert first["index"] == 0
        client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "1"})
        second = open_trial(client, token, 1).json()
        assert second["index"] == 2 and len(second["images"]) == 2, "trial 1 skipped, trial 2 served instead"
        assert client.post(f"/api/s/{token}/answer", json={"index": 1, "answer": "1"}).status_code == 409
        assert client.post(f"/api/s/{token}/answer", json={"index": 2, "answer": "2"}).status_code == 200
        last = client.get(f"/api/s/{token}/trial/3")
        assert last.status_code == 200 and last.json()["done"] and last.json()["completion_code"]
        resumed = client.post("/api/studies/s/sessions", json={"PROLIFIC_PID": "p", "SESSION_ID": "x"}).json()
        assert resumed["done"] and resumed["completion_code"] == last.json()["completion_code"]
    stored = _trials(engine, token)
    assert [t.skip_reason is not None for t in stored] == [False, True, False, True]
    assert "cannot decode image" in stored[1].skip_reason and [t.answer for t in stored] == ["1", None, "2", None]
    report = analyse(engine, "s", n_boot=50)
    assert report["skipped"]["trials"] == 2 and report["algorithms"]["alg_a"]["skipped_trials"] == 2
    assert report["algorithms"]["alg_a"]["included"] == 1 and report["algorithms"]["alg_a"]["labeled_real"]["trials"] == 2
    assert "skipped by the server (an image it could not serve): 2 trials" in format_report(report)
    engine.dispose()


def _paired_dirs(root: Path, image_dirs: dict[str, Path], matching: int) -> dict[str, Path]:
    """real/ with 10 images; fake/ with 10 images of which ``matching`` share a real file's name."""
    real, fake = root / "real", root / "fake"
    real.mkdir()
    fake.mkdir()
    for i in range(1, 11):
        shutil.copy(image_dirs["real"] / f"{i}.png", real / f"{i}.png")
        shutil.copy(image_dirs["alg_a"] / f"{i}.png", fake / (f"{i}.png" if i <= matching else f"x{i}.png"))
    return {"real": real, "fake": fake}


def test_partial_pairing_is_counted_and_refused_unless_repeats_allowed(tmp_path, image_dirs) -> None:
    dirs = _paired_dirs(tmp_path, image_dirs, matching=5)
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")

    def spec(name: str, **kw: Any) -> StudySpec:
        values = {"trials": 8, "practice": 2, "paired": True, **kw}
        return StudySpec(name=name, real=str(dirs["real"]), fake={"g": str(dirs["fake"])}, **values)

    with pytest.raises(UserError) as err:
        create_study(engine, spec("a"))
    assert "kept 5 pairs" in str(err.value) and "needs 10" in str(err.value) and "--allow-repeats" in str(err.value)
    notes: list[str] = []
    create_study(engine, spec("b", allow_repeats=True), notes)
    assert len(notes) == 1 and "kept 5 pairs" in notes[0] and "more than once" in notes[0]
    notes = []
    create_study(engine, spec("c", trials=3), notes)  # 2 + 3 = 5 pairs: enough
    assert "kept 5 pairs" in notes[0] and "more than once" not in notes[0]
    engine.dispose()


def test_cli_help_create_notes_and_missing_databases(tmp_path, image_dirs, capsys) -> None:
    from p2p_eval.cli import main

    assert main(["study", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "option_strings" not in help_text and "% labeled real per algorithm" in help_text
    dirs = _paired_dirs(tmp_path, image_dirs, matching=5)
    db = tmp_path / "s.db"
    assert main(["study", "create", "--db", str(db), "--name", "p", "--real", str(dirs["real"]), "--images",
                 f"g={dirs['fake']}", "--paired", "--trials", "3", "--practice", "1"]) == 0
    out = capsys.readouterr().out
    assert "--paired: g: kept 5 pairs" in out and "served images: on: every image resized to 256x256" in out
    assert main(["study", "create", "--db", str(db), "--name", "q", "--real", str(dirs["real"]), "--images",
                 f"g={dirs['fake']}", "--paired"]) == 2
    assert "--allow-repeats" in capsys.readouterr().err
    for argv, words in [(["serve", "--db", str(tmp_path / "typo.db")], ["does not exist", "study create"]),
                        (["report", "--db", str(tmp_path / "typo.db"), "--study", "p"], ["does not exist"]),
                        (["serve", "--db", str(tmp_path / "no" / "dir.db")], ["folder", "does not exist"]),
                        (["create", "--db", str(tmp_path / "no" / "dir.db"), "--name", "x", "--real", str(dirs["real"]),
                          "--images", f"g={dirs['fake']}"], ["folder", "does not exist"])]:
        assert main(["study", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err and all(w in err for w in words), err
    assert not (tmp_path / "typo.db").exists(), "a mistyped --db creates nothing"
    empty = tmp_path / "empty.db"
    make_engine(str(empty)).dispose()  # tables, no study
    assert main(["study", "serve", "--db", str(empty)]) == 2
    assert "holds no study" in capsys.readouterr().err


def test_serve_prints_its_urls(tmp_path, image_dirs) -> None:
    from tests.study.loadgen import free_port

    db = f"sqlite:///{tmp_path / 's.db'}"
    engine = make_engine(db)
    create_study(engine, StudySpec(name="maps", real=str(image_dirs["real"]), fake={"g": str(image_dirs["alg_a"])}))
    engine.dispose()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "p2p_eval.cli", "study", "serve", "--db", db, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("listening on" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.terminate()
        proc.wait(10)
    text = "".join(lines)
    assert f"participant page http://127.0.0.1:{port}/s/maps" in text, text
    assert f"http://127.0.0.1:{port}/api/admin/studies/maps/progress" in text
    assert f"listening on http://127.0.0.1:{port}" in text


def test_images_only_while_the_trial_is_open_and_re_views_counted(client, make_study) -> None:
    make_study(practice=0, trials=2)
    token = client.post("/api/studies/s1/sessions", json={}).json()["session"]
    trials = _trials(client.app.state.engine, token)
    first = f"/api/s/{token}/img/{trials[0].img1_token}"
    assert client.get(first).status_code == 404, "not before the trial is opened"
    urls = client.get(f"/api/s/{token}/trial/0").json()["images"]
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert client.get(urls[0]).status_code == 200, "a second request is served (the trial is open) ..."
    stored = _trials(client.app.state.engine, token)[0]
    assert (stored.fetches1, stored.fetches2) == (2, 1), "... and counted"
    client.post(f"/api/s/{token}/answer", json={"index": 0, "answer": "1"})
    assert all(client.get(url).status_code == 404 for url in urls), "gone once the trial is answered"
    report = analyse(client.app.state.engine, "s1", n_boot=50)
    assert report["re_views"] == {"trials": 1, "extra_requests": 1}
    assert "re-views (an image requested again while its trial was open; kept in the rates): 1 trial, " \
        in format_report(report)
